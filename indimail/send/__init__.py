"""The delivery engine (``twistd indimail-send``): qmail-send, todo-proc and
qmail-clean on Twisted, one :class:`~indimail.send.engine.QueueEngine` per queue."""
