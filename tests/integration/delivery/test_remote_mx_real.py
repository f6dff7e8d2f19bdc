"""Remote delivery to a real peer found through DNS: a twisted.names
authoritative server on loopback publishes the recipient domain's MX
records, and the best MX is this project's own SMTP service, which the
client reaches with STARTTLS and which queues the message."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.names import client, dns, server
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.delivery.remote import RemoteDelivery
from indimail.queue.envelope import Envelope
from indimail.smtp.service import SMTPService
from tests.unit.delivery.support import control, make_home, queue_message
from tests.unit.delivery.test_mx import MemoryAuthority

from .smtpserver import ScriptedFactory

BODY = b"From: bob@example.org\nSubject: via MX\n\nfound through DNS\n"
BEST, BACKUP = "127.0.0.2", "127.0.0.3"
SOA = dns.Record_SOA(mname=b"ns.zone.test", rname=b"root.zone.test", serial=1, refresh=60,
                     retry=60, expire=60, minimum=1, ttl=1)
RECORDS = {
    b"zone.test": [SOA],
    b"dest.zone.test": [dns.Record_MX(20, b"backup.zone.test"),
                        dns.Record_MX(10, b"mail.zone.test")],
    b"mail.zone.test": [dns.Record_A(BEST)],
    b"backup.zone.test": [dns.Record_A(BACKUP)],
}


class PortMap(RemoteDelivery):
    """MX hosts are reached on port 25; here each address's test port."""

    ports: dict[str, int] = {}

    async def _connect(self, address, _port, *args):
        return await super()._connect(address, self.ports[address], *args)


class RealMXTests(TestCase):

    def start_dns(self):
        factory = server.DNSServerFactory(authorities=[MemoryAuthority((b"zone.test", SOA),
                                                                       RECORDS)])
        port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return client.Resolver(servers=[("127.0.0.1", port.getHost().port)], reactor=reactor)

    async def start_smtpd(self) -> int:
        """This project's SMTP service on BEST, taking mail for dest.zone.test."""
        root = Path(self.mktemp()).absolute()
        self.peer = init_home(root, env={}, hostname="mail.zone.test")
        (self.peer.control / "rcpthosts").write_text("dest.zone.test\n")
        pool = ThreadPool(minthreads=1, maxthreads=4, name="mx-peer")
        pool.start()
        self.addCleanup(pool.stop)
        service = SMTPService(self.peer, reactor=reactor,
                              env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
                              threadpool=pool)
        await service.auth_ready
        port = reactor.listenTCP(0, service.factory("smtpd"), interface=BEST)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def queued(self) -> list[tuple[Envelope, bytes]]:
        queue = self.peer.queue_base / "queue1"
        return [(Envelope.from_todo(todo.read_bytes()),
                 (queue / "mess" / todo.parent.name / todo.name).read_bytes())
                for todo in sorted((queue / "todo").glob("*/*"))]

    async def test_best_mx_is_own_smtpd_with_starttls(self):
        """The MX of dest.zone.test (preference 10 before 20) is looked up in
        the test zone; the message goes to that host over STARTTLS and is
        queued there with the envelope and body intact."""
        backup = ScriptedFactory()
        backup_port = reactor.listenTCP(0, backup, interface=BACKUP)
        self.addCleanup(backup_port.stopListening)
        PortMap.ports = {BEST: await self.start_smtpd(),
                         BACKUP: backup_port.getHost().port}
        home = make_home(self.mktemp())
        queue, msgid = queue_message(home, BODY)
        agent = PortMap(home, control(home), reactor=reactor, env={},
                        resolver=self.start_dns())
        result = await agent.deliver(queue, msgid, "bob@example.org", "carol@dest.zone.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertIn(f"{BEST} accepted message - Protocol SMTP.", result.report)
        self.assertEqual(backup.connections, 0)
        [(envelope, message)] = self.queued()
        self.assertEqual(envelope.sender, "bob@example.org")
        self.assertEqual(envelope.recipients, ["carol@dest.zone.test"])
        self.assertTrue(message.endswith(BODY), message)
        self.assertRegex(message.decode(), r"by mail\.zone\.test with \(TLSv1\.[23] \S+ "
                                           r"encrypted\) ESMTPS; ")

    async def test_best_mx_down_backup_takes_it(self):
        """With nothing listening at the best MX the next preference gets
        the message."""
        backup = ScriptedFactory()
        backup_port = reactor.listenTCP(0, backup, interface=BACKUP)
        self.addCleanup(backup_port.stopListening)
        closed = reactor.listenTCP(0, ScriptedFactory(), interface=BEST)
        PortMap.ports = {BEST: closed.getHost().port, BACKUP: backup_port.getHost().port}
        await closed.stopListening()
        home = make_home(self.mktemp())
        queue, msgid = queue_message(home, BODY)
        agent = PortMap(home, control(home), reactor=reactor, env={},
                        resolver=self.start_dns())
        result = await agent.deliver(queue, msgid, "bob@example.org", "carol@dest.zone.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertIn(f"{BACKUP} accepted message", result.report)
        self.assertEqual(len(backup.messages), 1)
        await backup.all_closed()
