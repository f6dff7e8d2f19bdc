"""tlsclients on a real loopback socket: Python's smtplib does STARTTLS with
(or without) a client certificate from a CA generated here, against the
real SMTPService; only a verified certificate whose email is listed in
control/tlsclients may relay."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

from twisted.internet import reactor, threads
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.config.tcprules import compile_tcprules
from indimail.queue.envelope import Envelope
from indimail.smtp.service import SMTPService

from tests.unit.smtp.test_tlsclients import make_ca, make_client, make_crl

ME = "mx.example.com"
LISTED = "relay@client.example"
PATH_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"}


class TLSClientsTests(TestCase):

    async def start(self, clientca: bytes | None, tlsclients: str | None = LISTED + "\n",
                    clientcrl: bytes | None = None):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME)
        source = self.home.tcp / "tcp.smtp"   # loopback is no relay client here
        source.write_bytes(b"127.:allow\n")
        compile_tcprules(source, source.with_name("tcp.smtp.cdb"))
        if clientca is not None:
            (self.home.certs / "clientca.pem").write_bytes(clientca)
        if clientcrl is not None:
            (self.home.certs / "clientcrl.pem").write_bytes(clientcrl)
        if tlsclients is not None:
            (self.home.control / "tlsclients").write_text(tlsclients)
        pool = ThreadPool(minthreads=1, maxthreads=4, name="test-queue")
        pool.start()
        self.addCleanup(pool.stop)
        self.service = SMTPService(self.home, reactor=reactor, env=dict(PATH_ENV),
                                   threadpool=pool)
        await self.service.auth_ready
        self.port = reactor.listenTCP(0, self.service.factory(), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.keys = self.mktemp()
        Path(self.keys).mkdir()

    def queued(self) -> list[tuple[Envelope, bytes]]:
        queue = self.home.queue_base / "queue1"
        return [(Envelope.from_todo(todo.read_bytes()),
                 (queue / "mess" / todo.parent.name / todo.name).read_bytes())
                for todo in sorted((queue / "todo").glob("*/*"))]

    def send(self, issued=None, rcpt: str = "x@remote.example"):
        """STARTTLS (presenting *issued*'s certificate if given), one message."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if issued is not None:
            context.load_cert_chain(*issued.write(self.keys, "client"))
        with smtplib.SMTP("127.0.0.1", self.port.getHost().port,
                          local_hostname="client.example", timeout=60) as client:
            client.starttls(context=context)
            return client.sendmail("a@client.example", [rcpt], b"Subject: t\r\n\r\nbody\r\n")

    async def refused(self, issued=None) -> tuple[int, str]:
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as ctx:
            await threads.deferToThread(self.send, issued)
        [(code, text)] = ctx.exception.recipients.values()
        return code, text.decode()

    async def test_listed_certificate_relays(self):
        """A certificate of the clientca.pem CA with a listed email relays; the
        Received line names it."""
        ca = make_ca()
        await self.start(ca.cert_pem)
        self.assertEqual(await threads.deferToThread(
            self.send, make_client(ca, "client", LISTED)), {})
        [(envelope, mess)] = self.queued()
        self.assertEqual(envelope.recipients, ["x@remote.example"])
        self.assertIn(f"ESMTPS\n  (cert {LISTED});", mess.decode())

    async def test_unlisted_certificate_refused(self):
        """A verified certificate whose email is not in tlsclients may not relay."""
        ca = make_ca()
        await self.start(ca.cert_pem)
        code, text = await self.refused(make_client(ca, "client", "other@client.example"))
        self.assertEqual(code, 553)
        self.assertIn("no valid cert for gateway: email address not in my list of tlsclients",
                      text)
        self.assertEqual(self.queued(), [])

    async def test_no_certificate_refused(self):
        """A client that presents no certificate may not relay."""
        await self.start(make_ca().cert_pem)
        code, text = await self.refused()
        self.assertEqual(code, 553)
        self.assertTrue(text.endswith("; no valid cert for gateway  #5.7.1"), text)

    async def test_certificate_of_another_ca_refused(self):
        """A listed email in a certificate the client CAs did not sign does not relay."""
        await self.start(make_ca().cert_pem)
        code, text = await self.refused(make_client(make_ca("Other CA"), "client", LISTED))
        self.assertEqual(code, 553)
        self.assertIn("unable to get local issuer certificate", text)

    async def test_revoked_certificate_refused(self):
        """clientcrl.pem: a revoked certificate does not relay."""
        ca = make_ca()
        client = make_client(ca, "client", LISTED)
        await self.start(ca.cert_pem, clientcrl=make_crl(ca, client))
        code, text = await self.refused(client)
        self.assertEqual(code, 553)
        self.assertIn("certificate revoked", text)

    async def test_without_clientca_no_certificate_is_asked(self):
        """Without clientca.pem the listed certificate is never asked for: no relaying."""
        ca = make_ca()
        await self.start(None)
        code, _ = await self.refused(make_client(ca, "client", LISTED))
        self.assertEqual(code, 553)

    async def test_without_tlsclients_no_relay(self):
        """Without control tlsclients a verified certificate grants nothing."""
        ca = make_ca()
        await self.start(ca.cert_pem, tlsclients=None)
        code, _ = await self.refused(make_client(ca, "client", LISTED))
        self.assertEqual(code, 553)

    async def test_local_recipient_still_accepted(self):
        """Asking for a certificate does not stop clients without one from
        delivering to local domains."""
        await self.start(make_ca().cert_pem)
        self.assertEqual(await threads.deferToThread(self.send, None, f"postmaster@{ME}"), {})
        self.assertEqual(len(self.queued()), 1)

    async def test_ssl_version_logged(self):
        """After the STARTTLS handshake the session logs upstream's
        ``qmail-smtpd: pid N from IP ssl-version=TLSv1.3`` line."""
        lines: list[str] = []

        def observer(event):
            lines.append(formatEvent(event))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        await self.start(make_ca().cert_pem)
        await threads.deferToThread(self.send, None, f"postmaster@{ME}")
        self.assertTrue(any(line.startswith("qmail-smtpd: pid ")
                            and line.endswith(" from 127.0.0.1 ssl-version=TLSv1.3")
                            for line in lines), lines)
