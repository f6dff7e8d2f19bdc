"""The delivery agents: local (qmail-lspawn + qmail-local) and remote
(qmail-remote).  Both take ``(queue, msgid, sender, recipient, qqeh)`` and
fire with a :class:`~indimail.delivery.result.DeliveryResult`."""
