"""tlsclients on the SMTPS (implicit TLS) listener: with ``clientca.pem``
the handshake asks for (never requires) a client certificate, as STARTTLS
does, and a verified certificate whose email is in control/tlsclients may
relay.  Driven by ``openssl s_client -cert`` and Python's ssl against the
real service's SMTPS listener (an ``ssl:`` endpoint string), both as the
service adds it for ``--smtps`` and as an SMTP worker process wraps it."""

from __future__ import annotations

import datetime
import hashlib
import smtplib
import socket
import ssl

from twisted.internet import reactor, threads, utils
from twisted.trial.unittest import TestCase

from indimail.config.certs import self_signed_pem
from indimail.listeners import default_smtps
from indimail.smtp.worker import tls_factory

from tests.integration.smtp.test_cert_reload import fingerprint_of_pem
from tests.integration.smtp import test_tlsclients as starttls
from tests.integration.smtp.test_tlsclients import LISTED, ME, PATH_ENV
from tests.unit.smtp.test_tlsclients import make_ca, make_client

CA_NAMES = "Acceptable client certificate CA names"


def unverified() -> ssl.SSLContext:
    """A client context that takes the test home's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SMTPSClientCertBase:
    """The tests; subclasses say how the SMTPS listener is made."""

    async def start(self, clientca: bytes | None, tlsclients: str | None = LISTED + "\n"):
        # the home, service and keys directory of the STARTTLS tlsclients tests
        await starttls.TLSClientsTests.start(self, clientca, tlsclients)
        self.portno = await self.listen(default_smtps(self.home, 0))

    queued = starttls.TLSClientsTests.queued

    def send(self, issued=None, rcpt: str = "x@remote.example"):
        """Python's ssl: SMTPS with *issued*'s certificate (if given), one message."""
        context = unverified()
        if issued is not None:
            context.load_cert_chain(*issued.write(self.keys, "client"))
        with smtplib.SMTP_SSL("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=60, context=context) as client:
            return client.sendmail("a@client.example", [rcpt], b"Subject: t\r\n\r\nbody\r\n")

    refused = starttls.TLSClientsTests.refused   # (code, text) of send()'s refused relay

    async def s_client(self, issued=None, rcpt: str = "x@remote.example") -> str:
        """``openssl s_client`` over SMTPS (presenting *issued* if given):
        one pipelined transaction, then QUIT; its whole output."""
        args = ["s_client", "-connect", f"127.0.0.1:{self.portno}", "-crlf", "-ign_eof"]
        if issued is not None:
            crt, key = issued.write(self.keys, "s_client")
            args += ["-cert", crt, "-key", key]
        script = ("EHLO client.example\nMAIL FROM:<a@client.example>\n"
                  f"RCPT TO:<{rcpt}>\nDATA\nSubject: t\n\nbody\n.\nQUIT\n")
        out, err, code = await utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", 's=$1; shift; printf %s "$s" | exec openssl "$@"', "sh",
                        script, *args], env=PATH_ENV)
        output = (out + err).decode("utf-8", "replace")
        self.assertEqual(code, 0, output)
        return output

    async def test_s_client_listed_certificate_relays(self):
        """openssl s_client -cert: the SMTPS handshake names our CA, the listed
        certificate relays and the Received line says (cert <email>)."""
        ca = make_ca()
        await self.start(ca.cert_pem)
        output = await self.s_client(make_client(ca, "client", LISTED))
        self.assertRegex(output, CA_NAMES + r"\n.*CN ?= ?Test Client CA\n")
        self.assertIn("250 ok", output)
        [(_, mess)] = self.queued()
        self.assertIn(f"ESMTPS\n  (cert {LISTED});", mess.decode())

    async def test_s_client_without_certificate(self):
        """The certificate is asked for, not required: s_client without one
        completes the handshake, and its relay attempt gets upstream's 553."""
        await self.start(make_ca().cert_pem)
        output = await self.s_client()
        self.assertIn(CA_NAMES, output)
        self.assertIn("; no valid cert for gateway  #5.7.1", output)
        self.assertEqual(self.queued(), [])

    async def test_python_ssl_listed_certificate_relays(self):
        """Python's ssl with the listed certificate relays over SMTPS."""
        ca = make_ca()
        await self.start(ca.cert_pem)
        self.assertEqual(await threads.deferToThread(
            self.send, make_client(ca, "client", LISTED)), {})
        self.assertEqual(len(self.queued()), 1)

    async def test_unlisted_certificate_refused(self):
        """A verified certificate whose email is not in tlsclients may not relay."""
        ca = make_ca()
        await self.start(ca.cert_pem)
        code, text = await self.refused(make_client(ca, "client", "other@client.example"))
        self.assertEqual(code, 553)
        self.assertIn("email address not in my list of tlsclients", text)

    async def test_without_clientca_nothing_is_asked(self):
        """Without clientca.pem the SMTPS handshake asks for no certificate
        and a listed one grants nothing."""
        ca = make_ca()
        await self.start(None)
        output = await self.s_client(make_client(ca, "client", LISTED))
        self.assertNotIn(CA_NAMES, output)
        self.assertIn("553 ", output)
        self.assertEqual(self.queued(), [])

    async def test_reload_adds_and_removes_clientca(self):
        """A clientca.pem written after start is asked for on SMTPS once the
        service reloads (SIGHUP); removing it stops the asking again."""
        ca = make_ca()
        await self.start(None)
        listed = make_client(ca, "client", LISTED)
        (self.home.certs / "clientca.pem").write_bytes(ca.cert_pem)
        await self.service.reload()
        self.assertEqual(await threads.deferToThread(self.send, listed), {})
        (self.home.certs / "clientca.pem").unlink()
        await self.service.reload()
        code, _ = await self.refused(listed)
        self.assertEqual(code, 553)
        self.assertNotIn(CA_NAMES, await self.s_client(listed))

    async def test_reload_renews_certificate(self):
        """SIGHUP after a new certs/servercert.pem: the next SMTPS session
        shows the new certificate (the endpoint's file is read again)."""
        await self.start(None)
        old = fingerprint_of_pem((self.home.certs / "servercert.pem").read_bytes())
        self.assertEqual(await threads.deferToThread(self.shown), old)
        pem = self_signed_pem(ME, datetime.datetime.now(datetime.timezone.utc))
        (self.home.certs / "servercert.pem").write_bytes(pem)
        await self.service.reload()
        self.assertEqual(await threads.deferToThread(self.shown), fingerprint_of_pem(pem))

    async def test_broken_certificate_keeps_the_old(self):
        """A servercert.pem that no longer loads at SIGHUP: SMTPS goes on
        with the certificate it had, and the failure is logged."""
        await self.start(None)
        old = fingerprint_of_pem((self.home.certs / "servercert.pem").read_bytes())
        self.assertEqual(await threads.deferToThread(self.shown), old)
        (self.home.certs / "servercert.pem").write_bytes(b"not a certificate\n")
        await self.service.reload()
        self.assertEqual(await threads.deferToThread(self.shown), old)
        self.assertTrue(self.flushLoggedErrors())

    def shown(self) -> str:
        """SHA-256 of the certificate a new SMTPS connection shows."""
        with socket.create_connection(("127.0.0.1", self.portno), timeout=30) as raw:
            with unverified().wrap_socket(raw) as tls:
                return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


class ServiceListenerTests(SMTPSClientCertBase, TestCase):
    """The SMTPS listener the service adds for ``--smtps`` (``add_listener``)."""

    async def listen(self, description: str) -> int:
        self.service.add_listener("smtps", description, tls=True)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        port = await self.service.getServiceNamed("smtps")._waitingForPort
        return port.getHost().port


class WorkerListenerTests(SMTPSClientCertBase, TestCase):
    """The SMTPS listener of an SMTP worker process (``tls_factory`` around
    the service's factory on an inherited socket)."""

    async def listen(self, description: str) -> int:
        factory = tls_factory(reactor, description, self.service.factory("smtpd", True))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port
