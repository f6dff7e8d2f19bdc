"""CHUNKING/BDAT on a real loopback socket with a real home and queue.

smtplib has no BDAT, so the client is a raw socket protocol that writes
bytes and waits for complete replies.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Protocol
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.queue.envelope import Envelope
from indimail.smtp.service import SMTPService

ME = "mx.example.com"
_FINAL = re.compile(rb"^\d{3} .*$", re.M)


class ReplyClient(Protocol):
    """Sends raw bytes; ``replies(n)`` fires once *n* more complete replies
    (multi-line ones count once) have arrived, with their final lines."""

    def __init__(self):
        self.data = b""
        self.finals: list[str] = []
        self._taken = 0
        self._waiters: list[tuple[int, defer.Deferred]] = []
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.data += data
        while b"\r\n" in self.data:
            line, self.data = self.data.split(b"\r\n", 1)
            if _FINAL.match(line):
                self.finals.append(line.decode("utf-8", "replace"))
        self._check()

    def _check(self):
        for item in list(self._waiters):
            want, d = item
            if len(self.finals) >= want:
                self._waiters.remove(item)
                d.callback(None)

    async def replies(self, n: int, timeout: float = 60) -> list[str]:
        want = self._taken + n
        d = defer.Deferred()
        self._waiters.append((want, d))
        self._check()
        d.addTimeout(timeout, reactor)
        await d
        got, self._taken = self.finals[self._taken:want], want
        return got

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def connectionLost(self, reason):
        self.lost.callback(None)


class Server:
    """A real SMTPService for a fresh home, with *ENV* added."""

    ENV: dict[str, str] = {}

    def setUp(self):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME)
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name="test-queue")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.ENV}
        self.service = SMTPService(self.home, reactor=reactor, env=env, threadpool=self.pool)
        self.port = reactor.listenTCP(0, self.service.factory(), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.portno = self.port.getHost().port

    async def connect(self) -> ReplyClient:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.portno)
        client = await endpoints.connectProtocol(endpoint, ReplyClient())
        self.addCleanup(self._close, client)
        [greeting] = await client.replies(1)
        assert greeting.startswith("220 "), greeting
        return client

    async def _close(self, client: ReplyClient):
        if client.transport.connected:
            client.transport.loseConnection()
        await client.lost

    def queued(self) -> list[tuple[Envelope, bytes, int]]:
        queue = self.home.queue_base / "queue1"
        out = []
        for todo in sorted((queue / "todo").glob("*/*")):
            mess = queue / "mess" / todo.parent.name / todo.name
            out.append((Envelope.from_todo(todo.read_bytes()), mess.read_bytes(), int(todo.name)))
        return out


def body_of(mess: bytes) -> bytes:
    """The message after the queue's and smtpd's Received lines (three lines)."""
    return mess.split(b"\n", 3)[3]


class BdatTest(Server, TestCase):

    async def test_pipelined_chunks_land_in_queue(self):
        """EHLO offers CHUNKING; MAIL, RCPT and three BDATs pipelined in one
        write: each chunk answered in order, the message queued byte for byte
        (CRLF → LF), the last reply names the queue id."""
        client = await self.connect()
        client.send(b"EHLO client.example\r\n")
        [ehlo] = await client.replies(1)
        self.assertEqual(ehlo, "250 HELP")
        chunks = [b"Subject: chunks\r\n\r\n", b"8-bit \xe9\xff and NUL \x00\r\n",
                  b".leading dot\r\n"]
        data = b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@mx.example.com>\r\n"
        for i, chunk in enumerate(chunks):
            last = b" LAST" if i == len(chunks) - 1 else b""
            data += b"BDAT %d%s\r\n" % (len(chunk), last) + chunk
        client.send(data)
        replies = await client.replies(5)
        self.assertEqual(replies[:4], ["250 ok", "250 ok", f"250 ok {len(chunks[0])} octets "
                                       "received", f"250 ok {len(chunks[1])} octets received"])
        [(envelope, mess, msgid)] = self.queued()
        self.assertRegex(replies[4], rf"^250 ok \d+ qp {msgid}$")
        self.assertEqual((envelope.sender, envelope.recipients),
                         ("a@sender.example", ["b@mx.example.com"]))
        self.assertEqual(body_of(mess), b"".join(chunks).replace(b"\r\n", b"\n"))

    async def test_no_smuggling_inside_a_chunk(self):
        """``<CRLF>.<CRLF>MAIL FROM ...`` inside a chunk is message data: one
        message is queued, holding those lines."""
        client = await self.connect()
        chunk = (b"Subject: s\r\n\r\nx\r\n.\r\nMAIL FROM:<evil@sender.example>\r\n"
                 b"RCPT TO:<victim@mx.example.com>\r\nDATA\r\nforged\r\n.\r\n")
        client.send(b"EHLO c\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<b@mx.example.com>\r\n"
                    b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
        replies = await client.replies(5)
        self.assertEqual(replies[-1], "250 ok")
        [(envelope, mess, _)] = self.queued()
        self.assertEqual(envelope.recipients, ["b@mx.example.com"])
        self.assertIn(b"\nMAIL FROM:<evil@sender.example>\n", mess)

    async def test_large_chunk_streams(self):
        """An 8 MB chunk, written in pieces, is queued intact."""
        client = await self.connect()
        line = b"0123456789" * 7 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * (8 * 1024 * 1024 // len(line))
        client.send(b"EHLO c\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<b@mx.example.com>\r\n"
                    b"BDAT %d LAST\r\n" % len(body))
        for i in range(0, len(body), 1 << 16):
            client.send(body[i:i + (1 << 16)])
        replies = await client.replies(4)
        self.assertTrue(replies[-1].startswith("250 ok "), replies)
        [(_, mess, _)] = self.queued()
        self.assertEqual(body_of(mess), body.replace(b"\r\n", b"\n"))


class BdatLimitTest(Server, TestCase):

    ENV = {"DATABYTES": "1000"}

    async def test_databytes(self):
        """Past DATABYTES the chunks are read and dropped; LAST gets 552,
        nothing is queued and the session goes on."""
        client = await self.connect()
        chunk = b"x" * 700
        client.send(b"EHLO c\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<b@mx.example.com>\r\n"
                    b"BDAT 700\r\n" + chunk + b"BDAT 700 LAST\r\n" + chunk + b"NOOP\r\n")
        replies = await client.replies(6)
        self.assertEqual(replies[3:], [
            "250 ok 700 octets received",
            "552 sorry, that message size exceeds my databytes limit (#5.3.4)", "250 ok"])
        self.assertEqual(self.queued(), [])
