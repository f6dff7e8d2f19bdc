"""SIGHUP re-reads certs/servercert.pem: new STARTTLS sessions present the
new certificate, a session already encrypted goes on with the old one."""

from __future__ import annotations

import datetime
import hashlib
import os
import signal
import smtplib
import ssl
from pathlib import Path

from twisted.internet import reactor, threads
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.config.certs import self_signed_pem
from indimail.config.init import init_home
from indimail.smtp.service import SMTPService
from indimail.testing import wait_for

ME = "mx.example.com"
PATH_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"}


def fingerprint_of_pem(pem: bytes) -> str:
    """SHA-256 of the DER certificate in a key+certificate PEM."""
    start = pem.index(b"-----BEGIN CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem[start:].decode())).hexdigest()


class CertReloadTests(TestCase):

    async def start(self):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME)
        pool = ThreadPool(minthreads=1, maxthreads=4, name="test-queue")
        pool.start()
        self.addCleanup(pool.stop)
        self.service = SMTPService(self.home, reactor=reactor, env=dict(PATH_ENV),
                                   threadpool=pool)
        await self.service.auth_ready
        self.port = reactor.listenTCP(0, self.service.factory(), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.old = fingerprint_of_pem((self.home.certs / "servercert.pem").read_bytes())

    def replace_certificate(self) -> str:
        """A new servercert.pem (written as an editor would: new file, rename)."""
        pem = self_signed_pem(ME, datetime.datetime.now(datetime.timezone.utc))
        target = self.home.certs / "servercert.pem"
        tmp = target.with_name("servercert.pem.new")
        tmp.write_bytes(pem)
        os.replace(tmp, target)
        new = fingerprint_of_pem(pem)
        self.assertNotEqual(new, self.old)
        return new

    def open_tls(self) -> tuple[smtplib.SMTP, str]:
        """A session after STARTTLS and EHLO; the fingerprint the server showed."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client = smtplib.SMTP("127.0.0.1", self.port.getHost().port,
                              local_hostname="client.example", timeout=60)
        client.starttls(context=context)
        client.ehlo("client.example")
        return client, hashlib.sha256(client.sock.getpeercert(binary_form=True)).hexdigest()

    def finish(self, client: smtplib.SMTP) -> dict:
        """One message to a local recipient on *client*, then QUIT."""
        try:
            return client.sendmail("a@client.example", [f"postmaster@{ME}"],
                                   b"Subject: t\r\n\r\nbody\r\n")
        finally:
            client.quit()

    async def test_reload_presents_new_certificate(self):
        """After reload() a new session sees the new certificate; a session
        encrypted before keeps the old one and still delivers."""
        await self.start()
        old_client, seen = await threads.deferToThread(self.open_tls)
        self.assertEqual(seen, self.old)
        new = self.replace_certificate()
        await self.service.reload()
        new_client, seen_new = await threads.deferToThread(self.open_tls)
        self.assertEqual(seen_new, new)
        self.assertEqual(await threads.deferToThread(self.finish, new_client), {})
        # the old session is unaffected: same certificate, still takes mail
        self.assertEqual(hashlib.sha256(old_client.sock.getpeercert(binary_form=True))
                         .hexdigest(), self.old)
        self.assertEqual(await threads.deferToThread(self.finish, old_client), {})

    async def test_no_reload_keeps_certificate(self):
        """Replacing the file alone changes nothing until the service reloads."""
        await self.start()
        self.replace_certificate()
        client, seen = await threads.deferToThread(self.open_tls)
        self.assertEqual(seen, self.old)
        self.assertEqual(await threads.deferToThread(self.finish, client), {})

    async def test_sighup_signal_reloads(self):
        """A real SIGHUP to the process makes the started service re-read the certificate."""
        await self.start()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.assertEqual(signal.getsignal(signal.SIGHUP), self.service._on_hup,
                         "the service must own SIGHUP before the test sends one")
        before = self.service.server_tls
        new = self.replace_certificate()
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(reactor, lambda: self.service.server_tls is not before,
                       what="the SIGHUP reload")
        client, seen = await threads.deferToThread(self.open_tls)
        self.assertEqual(seen, new)
        self.assertEqual(await threads.deferToThread(self.finish, client), {})
