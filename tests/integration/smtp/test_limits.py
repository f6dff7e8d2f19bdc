"""Session limits and envrules on a real loopback socket with a real queue."""

from __future__ import annotations

import os
import smtplib
from pathlib import Path

from twisted.internet import defer, endpoints, reactor, threads
from twisted.internet.protocol import Protocol
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.queue.envelope import Envelope
from indimail.smtp.service import SMTPService
from tests.integration.smtp.test_smtpd import serve_home

ME = "mx.example.com"


class Raw(Protocol):
    """Collects what the server sends; ``greeted`` fires on the first bytes,
    ``lost`` when the server closes."""

    def __init__(self):
        self.data = b""
        self.greeted = defer.Deferred()
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.data += data
        if not self.greeted.called:
            self.greeted.callback(self.data)

    def connectionLost(self, reason):
        self.lost.callback(self.data)


class Server:
    """A real SMTPService on 127.0.0.1 with *ENV* and a ceo from.envrules line."""

    ENV: dict[str, str] = {}

    def setUp(self):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME)
        (self.home.control / "from.envrules").write_text("ceo@example.com:DATABYTES=\n")
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name="test-queue")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.ENV}
        self.service = SMTPService(self.home, reactor=reactor, env=env, threadpool=self.pool)
        self.port = reactor.listenTCP(0, self.service.factory(), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.portno = self.port.getHost().port

    async def connect(self) -> Raw:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.portno)
        return await endpoints.connectProtocol(endpoint, Raw())


class LimitsTest(Server, TestCase):

    ENV = {"MAXPERIP": "2", "DATABYTES": "1000"}

    async def test_maxperip_drops_the_third_connection(self):
        """MAXPERIP=2: two sessions from 127.0.0.1 are greeted, the third is
        closed by the server without a byte, as tcpserver's "no ip slots"."""
        first, second = await self.connect(), await self.connect()
        self.assertTrue((await first.greeted).startswith(b"220 "))
        self.assertTrue((await second.greeted).startswith(b"220 "))
        third = await self.connect()
        self.assertEqual(await third.lost, b"")
        for p in (first, second):
            p.transport.loseConnection()
            await p.lost

    def send(self, sender: str, size: int):
        body = b"Subject: t\r\n\r\n" + b"x" * 70 * (size // 72) + b"\r\n"

        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                client.ehlo()
                try:
                    client.sendmail(sender, [f"bob@{ME}"], body)
                except smtplib.SMTPResponseException as e:   # 552 at MAIL (SIZE) or DATA
                    return e.smtp_code
                return 250
        return threads.deferToThread(run)

    async def test_from_envrules_lift_databytes_for_one_sender(self):
        """``ceo@example.com:DATABYTES=`` in control/from.envrules: with DATABYTES=1000,
        ceo's 3 KB message is queued while another sender's, sent concurrently to
        the same service, gets 552 (smtplib declares SIZE, so at MAIL)."""
        codes = await defer.gatherResults([self.send("ceo@example.com", 3000),
                                           self.send("joe@example.net", 3000)])
        self.assertEqual(codes, [250, 552])
        todo = list((self.home.queue_base / "queue1" / "todo").glob("*/*"))
        self.assertEqual(len(todo), 1)


class EarlyTalkerTest(Server, TestCase):

    ENV = {"GREETDELAY": "-600"}

    async def test_early_talker_refused(self):
        """GREETDELAY=-600: a client that speaks first gets upstream's 554 at once
        and the server closes the connection; no greeting was sent."""
        client = await self.connect()
        client.transport.write(b"EHLO early.example\r\n")
        data = await client.lost
        self.assertEqual(data, b"554 SMTP protocol violation. Polite people say hello "
                               b"after the server greets them (#5.7.1)\r\n")


class DomainQueueTest(TestCase):

    def setUp(self):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME, queue_count=2)
        base = self.home.queue_base
        with open(self.home.control / "rcpthosts", "a") as f:
            f.write("example.org\n")
        (self.home.control / "domainqueue").write_text(
            f"example.org:QUEUEDIR={base}/queue2\n{ME}:QUEUE_START=1,QUEUE_COUNT=1\n")
        serve_home(self, self.home)

    def send(self, rcpt: str):
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                return client.sendmail("a@example.net", [rcpt], b"Subject: q\r\n\r\nq\r\n")
        return threads.deferToThread(run)

    def todo(self, queue: str) -> list[str]:
        """The recipients of the messages in *queue*'s todo/."""
        return sorted(r for todo in (self.home.queue_base / queue / "todo").glob("*/*")
                      for r in Envelope.from_todo(todo.read_bytes()).recipients)

    async def test_domainqueue_chooses_the_queue(self):
        """control/domainqueue picks the queue by recipient domain: example.org's
        mail lands in queue2 (QUEUEDIR), mx.example.com's in queue1 (QUEUE_START),
        though the service spreads other mail over both queues."""
        for _ in range(3):
            await self.send("bob@example.org")
            await self.send(f"bob@{ME}")
        self.assertEqual(self.todo("queue1"), [f"bob@{ME}"] * 3)
        self.assertEqual(self.todo("queue2"), ["bob@example.org"] * 3)


class GreetingAndHopsTest(Server, TestCase):
    """A multi-line smtpgreeting and the default MAXHOPS on a real socket."""

    async def test_multi_line_smtpgreeting(self):
        """Every line of control/smtpgreeting is a line of the 220 (banner
        on the first) and of QUIT's 221."""
        (self.home.control / "smtpgreeting").write_text(f"{ME}\nNo UCE, please\n")
        client = await self.connect()
        client.transport.write(b"QUIT\r\n")
        lines = (await client.lost).decode().split("\r\n")
        self.assertRegex(lines[0], rf"^220-{ME} \(NO UCE\) ESMTP IndiMail ")
        self.assertEqual(lines[1:4], ["220 No UCE, please", f"221-{ME}",
                                      "221 No UCE, please closing connection"])

    async def test_default_maxhops(self):
        """Without maxhops: 99 Received lines pass, 100 are refused 554 (looping)."""
        def send(hops):
            head = b"".join(b"Received: from hop%d\r\n" % i for i in range(hops))
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=30) as client:
                client.sendmail("a@example.net", [f"b@{ME}"], head + b"Subject: h\r\n\r\nh\r\n")
        await threads.deferToThread(send, 99)
        with self.assertRaises(smtplib.SMTPDataError) as ctx:
            await threads.deferToThread(send, 100)
        self.assertEqual(ctx.exception.smtp_code, 554)
        self.assertIn(b"too many hops", ctx.exception.smtp_error)
