"""The delivery engine with a real queue, the real Enqueuer, LocalDelivery
into a Maildir and RemoteDelivery through smtproutes to an SMTP sink."""

from __future__ import annotations

import os
import re

from twisted.internet import defer, protocol, reactor
from twisted.logger import globalLogPublisher
from twisted.protocols.basic import LineReceiver
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

from indimail.config.init import init_home
from indimail.queue.enqueue import Enqueuer
from indimail.queue.layout import SPLIT_DIRS
from indimail.send.service import make_send_service
from tests.unit.send.helpers import tempdir


class _SinkProtocol(LineReceiver):
    """Just enough SMTP to accept mail: every command gets a 2xx/3xx reply."""

    delimiter = b"\r\n"

    def connectionMade(self):
        self.data = None
        self.mail_from = None
        self.rcpts: list[bytes] = []
        self.sendLine(b"220 sink ESMTP")

    def lineReceived(self, line):
        if self.data is not None:
            if line == b".":
                self.factory.received.append((self.mail_from, self.rcpts, b"\n".join(self.data)))
                waiters, self.factory.waiters = self.factory.waiters, []
                for d in waiters:
                    d.callback(self.factory.received[-1])
                self.data = None
                self.sendLine(b"250 ok queued")
            else:
                self.data.append(line[1:] if line.startswith(b"..") else line)
            return
        verb = line[:4].upper()
        if verb == b"MAIL":
            self.mail_from, self.rcpts = line[10:], []
        elif verb == b"RCPT":
            self.rcpts.append(line[8:])
        if verb == b"DATA":
            self.data = []
            self.sendLine(b"354 go ahead")
        elif verb == b"QUIT":
            self.sendLine(b"221 bye")
            self.transport.loseConnection()
        else:
            self.sendLine(b"250 ok")


class SinkFactory(protocol.ServerFactory):
    protocol = _SinkProtocol

    def __init__(self):
        self.received: list[tuple] = []
        self.waiters: list[defer.Deferred] = []

    def next_message(self) -> defer.Deferred:
        d = defer.Deferred()
        self.waiters.append(d)
        return d


class LineWaiter:
    """Fires a Deferred when the engine logs a line matching a pattern."""

    def __init__(self):
        self.lines: list[str] = []
        self.waits: list[tuple[re.Pattern, defer.Deferred]] = []
        globalLogPublisher.addObserver(self)

    def close(self):
        globalLogPublisher.removeObserver(self)

    def __call__(self, event):
        line = event.get("line")
        if line is None:
            return
        self.lines.append(line)
        for item in list(self.waits):
            match = item[0].search(line)
            if match:
                self.waits.remove(item)
                reactor.callLater(0, item[1].callback, match)

    def wait(self, pattern: str) -> defer.Deferred:
        regex = re.compile(pattern)
        for line in self.lines:
            match = regex.search(line)
            if match:
                return defer.succeed(match)
        d = defer.Deferred()
        self.waits.append((regex, d))
        return d


class EngineIntegrationTests(unittest.TestCase):

    timeout = 60

    def setUp(self):
        self.home = init_home(tempdir(self), domain="example.com",
                              env={}, hostname="mx.example.net")
        domain_dir = self.home.domains / "example.com"
        (domain_dir / ".qmail-alice").write_text("./alice/Maildir/\n")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(domain_dir / "alice" / "Maildir" / sub)
        self.maildir_new = domain_dir / "alice" / "Maildir" / "new"
        self.sink = SinkFactory()
        self.port = reactor.listenTCP(0, self.sink, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        (self.home.control / "smtproutes").write_text(
            f"far.test:127.0.0.1:{self.port.getHost().port}\n")
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name="test-enqueue")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.enqueuer = Enqueuer(self.home, {}, reactor=reactor, threadpool=self.pool)
        self.logs = LineWaiter()
        self.addCleanup(self.logs.close)
        self.service = make_send_service(self.home, reactor=reactor, env={},
                                         enqueuer=self.enqueuer)
        self.service.startService()
        self.addCleanup(lambda: self.service.stopService() if self.service.running else None)

    def queue_files(self) -> list[str]:
        [engine] = self.service.engines
        found = []
        for kind in SPLIT_DIRS + ("bounce",):
            for root, _dirs, files in os.walk(engine.queue.path / kind):
                found += [os.path.join(root, f) for f in files]
        return found

    @defer.inlineCallbacks
    def test_deliver_and_bounce_through_smtproutes(self):
        """Mail for a user with a .qmail file lands in the Maildir; mail for an
        address with no .qmail file bounces to the sender in QSBMF form, and
        the bounce leaves through smtproutes; the queue ends up empty."""
        bounced = self.sink.next_message()
        msgid = yield self.enqueuer.enqueue(
            "sender@far.test", ["alice@example.com", "nobody@example.com"],
            [b"Subject: test\n\nHello Alice.\n"])
        mail_from, rcpts, data = yield bounced
        self.assertEqual(mail_from, b"<>")
        self.assertEqual(rcpts, [b"<sender@far.test>"])
        self.assertIn(b"Hi. This is the qmail-send program at mx.example.net.", data)
        self.assertIn(b"<nobody@example.com>:\r\nSorry, no mailbox here by that name. (#5.1.1)"
                      .replace(b"\r\n", b"\n"), data)
        self.assertIn(b"Return-Path: <sender@far.test>", data)
        self.assertIn(b"Hello Alice.", data)
        match = yield self.logs.wait(rf"bounce msg {msgid} qp (\d+)")
        yield self.logs.wait(rf"end msg {match.group(1)}\b")
        yield self.logs.wait(rf"end msg {msgid}\b")
        yield self.service.stopService()  # drains the removal of the last files
        [delivered] = os.listdir(self.maildir_new)
        self.assertIn(b"Hello Alice.", (self.maildir_new / delivered).read_bytes())
        self.assertEqual(self.queue_files(), [])

    @defer.inlineCallbacks
    def test_deferral_survives_restart(self):
        """A remote deferral (relay down) leaves the message queued with its
        next retry time; a new engine picks it up and, on SIGALRM's run_now,
        delivers it once the relay answers; the local part is not repeated."""
        port = self.port.getHost().port
        yield self.port.stopListening()
        deferred = self.logs.wait(r"delivery \d+: deferral: ")
        msgid = yield self.enqueuer.enqueue("sender@far.test", ["alice@example.com",
                                                                "bob@far.test"],
                                            [b"Subject: later\n\nbody\n"])
        yield deferred
        yield self.logs.wait(r"delivery \d+: success: did_1\+0\+0/")
        yield self.service.stopService()
        [engine] = self.service.engines
        self.assertTrue(engine.queue.remote(msgid).exists())
        self.assertFalse(engine.queue.local(msgid).exists())
        self.port = reactor.listenTCP(port, self.sink, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        arrived = self.sink.next_message()
        second = make_send_service(self.home, reactor=reactor, env={}, enqueuer=self.enqueuer)
        second.startService()
        self.addCleanup(lambda: second.stopService() if second.running else None)
        yield second.engines[0].when_ready()
        second.run_now()
        _from, rcpts, data = yield arrived
        self.assertEqual(rcpts, [b"<bob@far.test>"])
        yield self.logs.wait(rf"end msg {msgid}\b")
        yield second.stopService()
        self.assertEqual(len(os.listdir(self.maildir_new)), 1)
        self.assertEqual(self.queue_files(), [])
