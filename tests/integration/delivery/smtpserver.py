"""A scripted SMTP server for the remote-delivery tests: each command gets a
configured reply, and what the client sent is recorded."""

from __future__ import annotations

import shutil
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import TestCase

from tests.unit.delivery.support import make_home, queue_message


class ScriptedSMTP(LineReceiver):
    """Replies from ``factory.replies``; ``None`` means stay silent and
    ``"drop"`` closes the connection."""

    delimiter = b"\r\n"

    def connectionMade(self):
        self.factory.connections += 1
        self.factory.open += 1
        self.in_data = False
        self.data = []
        self._reply("greeting")

    def _reply(self, stage: str):
        self.factory.stage_reached(stage)
        reply = self.factory.replies.get(stage, self.factory.DEFAULTS[stage])
        if reply is None:
            return
        if reply == "drop":
            self.transport.loseConnection()
            return
        self.transport.write(reply.encode() + b"\r\n")

    def lineReceived(self, line: bytes):
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.factory.messages.append(b"".join(self.data))
                self._reply("dot")
            else:
                self.data.append(line + b"\r\n")
            return
        self.factory.commands.append(line.decode())
        verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
        stage = {b"EHLO": "ehlo", b"HELO": "helo", b"MAIL": "mail", b"RCPT": "rcpt",
                 b"DATA": "data", b"QUIT": "quit"}.get(verb, "other")
        if stage == "data" and self.factory.replies.get("data", "354 go")[:1] == "3":
            self.in_data = True
        self._reply(stage)
        if stage == "quit":
            self.transport.loseConnection()

    def connectionLost(self, reason=None):
        self.factory.open -= 1
        self.factory.closed.append(self.data if self.in_data else None)
        waiters, self.factory.close_waiters = self.factory.close_waiters, []
        for d in waiters:
            d.callback(None)


class ScriptedFactory(protocol.ServerFactory):
    protocol = ScriptedSMTP
    DEFAULTS = {
        "greeting": "220 test ESMTP", "ehlo": "250-test\r\n250-SIZE 1000000\r\n250 8BITMIME",
        "helo": "250 test", "mail": "250 ok", "rcpt": "250 ok", "data": "354 go",
        "dot": "250 ok queued", "quit": "221 bye", "other": "502 no",
    }

    def __init__(self, **replies):
        self.replies = replies
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.closed: list = []
        self.connections = 0
        self.open = 0
        self.close_waiters: list[defer.Deferred] = []
        self.stage_waiters: dict[str, list[defer.Deferred]] = {}

    def stage_reached(self, stage: str):
        for d in self.stage_waiters.pop(stage, []):
            d.callback(None)

    def when(self, stage: str) -> defer.Deferred:
        """Fires when the client reaches *stage* (before the reply)."""
        d = defer.Deferred()
        self.stage_waiters.setdefault(stage, []).append(d)
        return d

    def when_closed(self) -> defer.Deferred:
        """Fires when the next connection closes."""
        d = defer.Deferred()
        self.close_waiters.append(d)
        return d

    async def all_closed(self) -> None:
        """Returns once no connection is open (for test cleanups)."""
        while self.open:
            await self.when_closed()


class ScriptedServerCase(TestCase):
    """A home with one queued message (*BODY*) and :meth:`serve`, which
    listens with *factory_class* on loopback until the test ends."""

    factory_class = None   # set by each test module to its factory
    BODY = b"Subject: test\n\n.leading dot\nline two\n"

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home, self.BODY)

    def serve(self, interface="127.0.0.1", port=0, **replies):
        factory = self.factory_class(**replies)
        listening = reactor.listenTCP(port, factory, interface=interface)
        self.addCleanup(listening.stopListening)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(factory.all_closed()))
        return factory, listening.getHost().port
