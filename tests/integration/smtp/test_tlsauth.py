"""STARTTLS and AUTH of indimail-smtpd on a real loopback socket, driven by
independent clients: swaks, gsasl and Python's smtplib."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

from twisted.internet import reactor, threads, utils
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.config.tcprules import compile_tcprules
from indimail.queue.envelope import Envelope
from indimail.smtp.service import SMTPService

from tests.unit.auth.test_schemes import SEED_SCRAM_CLEAR

ME = "mx.example.com"
USER, PASSWORD = "manny@example.com", "supersecret"
PATH_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"}


class TLSAuthBase(TestCase):
    passwd = True
    flavour = "smtpd"

    async def start(self, control: dict[str, str] | None = None, env=None, implicit_tls=False):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME)
        if self.passwd:
            (self.home.users / "passwd").write_text(f"{USER}:{SEED_SCRAM_CLEAR}\n")
        # loopback is not a relay client here: only AUTH may grant relaying
        source = self.home.tcp / "tcp.smtp"
        source.write_bytes(b"127.:allow\n")
        compile_tcprules(source, source.with_name("tcp.smtp.cdb"))
        for name, value in (control or {}).items():
            (self.home.control / name).write_text(value)
        pool = ThreadPool(minthreads=1, maxthreads=4, name="test-queue")
        pool.start()
        self.addCleanup(pool.stop)
        self.service = SMTPService(self.home, reactor=reactor, env={**PATH_ENV, **(env or {})},
                                   threadpool=pool)
        await self.service.auth_ready
        factory = self.service.factory(self.flavour, tls=implicit_tls)
        factory.auth_fail_delay = 0.01
        if implicit_tls:
            self.port = reactor.listenSSL(0, factory, self.service.server_tls.options(),
                                          interface="127.0.0.1")
        else:
            self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.portno = self.port.getHost().port

    def queued(self) -> list[tuple[Envelope, bytes]]:
        queue = self.home.queue_base / "queue1"
        return [(Envelope.from_todo(todo.read_bytes()),
                 (queue / "mess" / todo.parent.name / todo.name).read_bytes())
                for todo in sorted((queue / "todo").glob("*/*"))]

    async def swaks(self, *args):
        out, err, code = await utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", 'exec swaks "$@" </dev/null', "swaks",
                        "--server", f"127.0.0.1:{self.portno}", "--helo", "client.example",
                        *args], env=PATH_ENV)
        return code, (out + err).decode("utf-8", "replace")


class SwaksTests(TLSAuthBase):

    async def relay(self, mech):
        await self.start()
        code, output = await self.swaks("--tls", "--auth", mech, "--auth-user", USER,
                                        "--auth-password", PASSWORD,
                                        "--from", "a@sender.example", "--to", "x@remote.example")
        self.assertEqual(code, 0, output)
        self.assertIn("250-STARTTLS", output)
        self.assertIn("235 ok, go ahead (#2.0.0)", output)
        [(envelope, mess)] = self.queued()
        self.assertEqual(envelope.recipients, ["x@remote.example"])
        self.assertIn(f"(HELO client.example) ({USER}@127.0.0.1)\n".encode(), mess)
        self.assertRegex(mess.decode(), r"  by mx\.example\.com with \(TLSv1\.[23] \S+ "
                                        r"encrypted\) ESMTPSA; ")

    async def test_plain_over_tls_relays(self):
        """swaks --tls --auth PLAIN relays to a remote domain; Received says ESMTPSA."""
        await self.relay("PLAIN")

    async def test_login_over_tls_relays(self):
        """swaks --tls --auth LOGIN relays to a remote domain."""
        await self.relay("LOGIN")

    async def test_cram_md5_over_tls_relays(self):
        """swaks --tls --auth CRAM-MD5 relays to a remote domain."""
        await self.relay("CRAM-MD5")

    async def test_wrong_password(self):
        """swaks with a wrong password gets 535 authorization failed and nothing is queued."""
        await self.start()
        code, output = await self.swaks("--tls", "--auth", "PLAIN", "--auth-user", USER,
                                        "--auth-password", "wrong",
                                        "--from", "a@sender.example", "--to", "x@remote.example")
        self.assertEqual(code, 28, output)
        self.assertIn("535 authorization failed (#5.7.1)", output)
        self.assertEqual(self.queued(), [])

    async def test_no_auth_without_checkers(self):
        """Without users/passwd or AUTHMODULES the EHLO offers no AUTH."""
        self.passwd = False
        await self.start()
        code, output = await self.swaks("--tls", "--quit-after", "EHLO")
        self.assertEqual(code, 0, output)
        self.assertNotIn("AUTH", output)


class SubmissionTests(TLSAuthBase):
    flavour = "submission"

    async def test_submission_requires_auth(self):
        """On the submission listener MAIL needs AUTH (REQUIREAUTH by default)."""
        await self.start()
        code, output = await self.swaks("--tls", "--from", "a@sender.example",
                                        "--to", "b@mx.example.com")
        self.assertNotEqual(code, 0, output)
        self.assertIn("530 authentication required (#5.7.1)", output)
        code, output = await self.swaks("--tls", "--auth", "PLAIN", "--auth-user", USER,
                                        "--auth-password", PASSWORD,
                                        "--from", "a@sender.example", "--to", "b@mx.example.com")
        self.assertEqual(code, 0, output)


class GsaslTests(TLSAuthBase):

    async def gsasl(self, mech, *extra, password=PASSWORD):
        args = ["--smtp", f"--connect=127.0.0.1:{self.portno}", f"--hostname={ME}",
                "-a", USER, "-p", password, "--mechanism", mech, "--starttls",
                "--x509-ca-file=", *extra]
        out, err, code = await utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", 'exec gsasl "$@" </dev/null', "gsasl", *args], env=PATH_ENV)
        return code, (out + err).decode("utf-8", "replace")

    def record_bindings(self) -> list:
        """Patch the protocol's channel-binding source to record the binding types used."""
        from indimail.smtp import authcommand
        kinds = []
        original = authcommand.transport_binding

        def recording(transport):
            get = original(transport)

            def binding():
                value = get()
                kinds.append(value[0] if value else None)
                return value
            return binding
        self.patch(authcommand, "transport_binding", recording)
        return kinds

    async def test_scram_sha256_plus_tls13(self):
        """gsasl SCRAM-SHA-256-PLUS over STARTTLS (TLS 1.3) authenticates, bound by tls-exporter."""
        kinds = self.record_bindings()
        await self.start()
        code, output = await self.gsasl("SCRAM-SHA-256-PLUS")
        self.assertEqual(code, 0, output)
        self.assertIn("tls-exporter", kinds)

    async def test_scram_sha256_plus_tls12(self):
        """With control tlsservermethod TLSv1_2, SCRAM-SHA-256-PLUS binds with tls-unique."""
        kinds = self.record_bindings()
        await self.start({"tlsservermethod": "TLSv1_2\n"})
        code, output = await self.gsasl("SCRAM-SHA-256-PLUS")
        self.assertEqual(code, 0, output)
        self.assertEqual(set(kinds), {"tls-unique"})

    async def test_scram_sha1_plus(self):
        """gsasl SCRAM-SHA-1-PLUS over STARTTLS authenticates (keys from the clear text)."""
        await self.start()
        code, output = await self.gsasl("SCRAM-SHA-1-PLUS")
        self.assertEqual(code, 0, output)

    async def test_scram_wrong_password(self):
        """gsasl with a wrong SCRAM password is refused."""
        await self.start()
        code, output = await self.gsasl("SCRAM-SHA-256-PLUS", password="wrong")
        self.assertNotEqual(code, 0, output)


class SmtplibTests(TLSAuthBase):

    def client(self, auth: bool, rcpt: str):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                          timeout=30) as client:
            client.starttls(context=context)
            if auth:
                client.login(USER, PASSWORD)
            return client.sendmail("a@sender.example", [rcpt], b"Subject: t\r\n\r\nbody\r\n")

    async def test_authenticated_client_relays(self):
        """smtplib: STARTTLS + login may relay to a domain not in rcpthosts."""
        await self.start()
        refused = await threads.deferToThread(self.client, True, "x@remote.example")
        self.assertEqual(refused, {})
        [(envelope, _)] = self.queued()
        self.assertEqual(envelope.recipients, ["x@remote.example"])

    async def test_unauthenticated_client_may_not_relay(self):
        """smtplib without AUTH: a remote recipient gets 553, nothing is queued."""
        await self.start()
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as ctx:
            await threads.deferToThread(self.client, False, "x@remote.example")
        [(code, _)] = ctx.exception.recipients.values()
        self.assertEqual(code, 553)
        self.assertEqual(self.queued(), [])

    async def test_sighup_reload_enables_auth(self):
        """A password file written after start is used once the service reloads (SIGHUP)."""
        self.passwd = False
        await self.start()

        def features():
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=30) as client:
                client.ehlo("client.example")
                return client.esmtp_features.get("auth")
        self.assertIsNone(await threads.deferToThread(features))
        (self.home.users / "passwd").write_text(f"{USER}:{SEED_SCRAM_CLEAR}\n")
        await self.service.reload()
        self.assertIn("PLAIN", await threads.deferToThread(features))

    async def test_tlsservermethod_and_cipher_list(self):
        """control tlsservermethod TLSv1_2 pins TLS 1.2; TLS_CIPHER_LIST picks the cipher."""
        cipher = "ECDHE-RSA-AES128-GCM-SHA256"
        await self.start({"tlsservermethod": "TLSv1_2\n"}, env={"TLS_CIPHER_LIST": cipher})

        def negotiate():
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=30) as client:
                client.starttls(context=context)
                return client.sock.version(), client.sock.cipher()[0]
        self.assertEqual(await threads.deferToThread(negotiate), ("TLSv1.2", cipher))

    async def test_smtps_implicit_tls(self):
        """On the SMTPS listener AUTH works at once and the Received line shows the TLS."""
        await self.start(implicit_tls=True)

        def send():
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with smtplib.SMTP_SSL("127.0.0.1", self.portno, local_hostname="client.example",
                                  timeout=30, context=context) as client:
                client.ehlo("client.example")
                starttls = client.has_extn("starttls")
                client.login(USER, PASSWORD)
                client.sendmail("a@sender.example", ["x@remote.example"], b"body\r\n")
                return starttls
        self.assertFalse(await threads.deferToThread(send))
        [(_, mess)] = self.queued()
        self.assertRegex(mess.decode(), r"with \(TLSv1\.3 \S+ encrypted\) ESMTPSA; ")


CHECKPW = r"""#!/bin/sh
# IndiMail's checkpassword convention: exit 0 on success, else try the next module
user=$(tr '\0' '\n' <&3 | sed -n 1,2p | tr '\n' ' ')
[ "$user" = "prog@example.com secret " ] && exit 0
exec "$@"
"""


class AuthModulesTests(TLSAuthBase):

    async def start_with_module(self):
        script = Path(self.mktemp())
        script.write_text(CHECKPW)
        script.chmod(0o755)
        await self.start(env={"AUTHMODULES": str(script)})

    def login(self, user, password):
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=30) as client:
                client.ehlo("client.example")
                client.login(user, password)
                return client.sendmail("a@sender.example", ["x@remote.example"], b"b\r\n")
        return threads.deferToThread(run)

    async def test_checkpassword_module_and_password_file(self):
        """AUTHMODULES programs and users/passwd both authenticate (file first, then programs)."""
        await self.start_with_module()
        self.assertEqual(await self.login("prog@example.com", "secret"), {})
        self.assertEqual(await self.login(USER, PASSWORD), {})
        self.assertEqual(len(self.queued()), 2)

    async def test_checkpassword_module_refuses(self):
        """A password neither the file nor the program accepts gets 535."""
        await self.start_with_module()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as ctx:
            await self.login("prog@example.com", "wrong")
        self.assertEqual(ctx.exception.smtp_code, 535)
