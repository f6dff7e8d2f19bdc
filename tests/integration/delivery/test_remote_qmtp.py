"""QMTP delivery through control/qmtproutes, against a tiny QMTP receiver
written here (real sockets on loopback)."""

from twisted.internet import defer, protocol, reactor, task

from indimail.delivery.remote import RemoteDelivery
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedServerCase

BODY = b"Subject: q\n\n.dot stays\nline\n"


def ns(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def parse_netstring(data: bytes):
    """(content, rest) or None when incomplete."""
    head, colon, rest = data.partition(b":")
    if not colon:
        return None
    length = int(head)
    if len(rest) < length + 1:
        return None
    assert rest[length:length + 1] == b","
    return rest[:length], rest[length + 1:]


class QMTPReceiver(protocol.Protocol):
    """Reads one transaction; answers ``factory.answer`` (raw bytes, or
    None to stay silent) for each recipient."""

    def connectionMade(self):
        self.factory.connections += 1
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        parts, rest = [], self.buffer
        for _ in range(3):
            parsed = parse_netstring(rest)
            if parsed is None:
                return
            part, rest = parsed
            parts.append(part)
        message, sender, rcpts = parts
        recipients = []
        while rcpts:
            rcpt, rcpts = parse_netstring(rcpts)
            recipients.append(rcpt)
        self.factory.received.append((message, sender, recipients))
        self.buffer = rest
        if self.factory.answer is not None:
            self.transport.write(self.factory.answer)
        waiters, self.factory.waiters = self.factory.waiters, []
        for d in waiters:
            d.callback(None)


class QMTPFactory(protocol.ServerFactory):
    protocol = QMTPReceiver

    def __init__(self, answer=ns(b"Kok thanks")):
        self.answer = answer
        self.received = []
        self.connections = 0
        self.open = 0
        self.waiters = []

    def when_received(self):
        d = defer.Deferred()
        self.waiters.append(d)
        return d

    async def all_closed(self):
        return None


class QMTPTests(ScriptedServerCase):
    factory_class = QMTPFactory
    BODY = BODY

    def agent(self, clock=None, **env):
        return RemoteDelivery(self.home, control(self.home), reactor=reactor, env=env,
                              resolver=FakeResolver(), clock=clock)

    def deliver(self, agent, sender="bob@example.org", qqeh=None):
        return agent.deliver(self.queue, self.msgid, sender, "carol@remote.test", qqeh)

    async def test_accepted(self):
        """A qmtproutes route sends the message netstring (``\\n`` first,
        queue extra headers, LF lines, no dot-stuffing), the sender and the
        recipient; K is success with upstream's report."""
        server, port = self.serve()
        (self.home.control / "qmtproutes").write_text(f"remote.test:127.0.0.1:{port}\n")
        result = await self.deliver(self.agent(), qqeh="X-Q: 1\n")
        self.assertEqual((result.status, result.report), (
            "success", "Remote host said: ok thanks\n127.0.0.1 accepted message - Protocol QMTP"))
        self.assertEqual(server.received, [(b"\nX-Q: 1\n" + BODY, b"bob@example.org",
                                            [b"carol@remote.test"])])

    async def test_permanent(self):
        """D is a permanent failure."""
        server, port = self.serve(answer=ns(b"Dno such\x01"))
        result = await self.deliver(self.agent(QMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "failure", "Remote host said: no such?\nGiving up on 127.0.0.1 - Protocol QMTP"))

    async def test_temporary(self):
        """Z is a deferral."""
        server, port = self.serve(answer=ns(b"Zfull"))
        result = await self.deliver(self.agent(QMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "deferral", "Remote host said: full\nGiving up on 127.0.0.1 - Protocol QMTP"))

    async def test_protocol_error(self):
        """An answer that is not a K/Z/D netstring defers."""
        server, port = self.serve(answer=b"220 I am SMTP\r\n")
        result = await self.deliver(self.agent(QMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "deferral", "recipient did not talk proper QMTP (#4.3.0)"))

    async def test_qmtp_wins_over_smtp(self):
        """At the same key qmtproutes beats smtproutes."""
        server, port = self.serve()
        (self.home.control / "qmtproutes").write_text(f"remote.test:127.0.0.1:{port}\n")
        (self.home.control / "smtproutes").write_text("remote.test:127.0.0.1:1\n")
        result = await self.deliver(self.agent())
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.connections, 1)

    async def test_no_connection(self):
        """Nobody listening: qmail-remote's QMTP wording, no bind IP."""
        from indimail.testing import free_port
        port = free_port()
        result = await self.deliver(self.agent(QMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "deferral", f"Sorry, I wasn't able to establish a QMTP connection for 127.0.0.1 "
                        f"to 127.0.0.1 port {port}. (#4.4.1)"))

    async def test_silent_server_times_out(self):
        """No answer within timeoutremote drops the connection and defers."""
        (self.home.control / "timeoutremote").write_text("40\n")
        server, port = self.serve(answer=None)
        clock = task.Clock()
        result_d = self.deliver(self.agent(clock=clock, QMTPROUTE=f":127.0.0.1:{port}"))
        await server.when_received()
        await task.deferLater(reactor, 0, lambda: None)   # the client starts waiting
        clock.advance(39)
        self.assertNoResult(result_d)
        clock.advance(1)
        result = await result_d
        self.assertEqual((result.status, result.report), (
            "deferral", "Connected to 127.0.0.1 but connection died. Possible duplicate! "
                        "(#4.4.2)"))
