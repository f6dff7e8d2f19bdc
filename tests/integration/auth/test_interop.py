"""Independent clients over real loopback sockets: swaks and gsasl against each mechanism."""

import base64


from twisted.internet import reactor, utils
from twisted.trial.unittest import TestCase

from indimail.auth import schemes
from indimail.auth.checkers import PasswordFileChecker
from indimail.auth.realm import make_portal
from indimail.config.environment import Environment

from tests.unit.auth.test_schemes import SEED_SCRAM_CLEAR

from .authserver import TLS1_2, AuthOnlyFactory, tls_options

USER, PASSWORD = "manny@example.com", "supersecret"
PATH_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"}


class InteropBase(TestCase):
    tls_max = None
    use_tls = False

    async def start(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(f"{USER}:{SEED_SCRAM_CLEAR}\n".encode())
        checker = PasswordFileChecker(path, reactor)
        await checker.load()
        self.factory = AuthOnlyFactory(
            make_portal([checker]), scram_source=checker, env=Environment(),
            tls_options=tls_options(self.tls_max) if self.use_tls else None)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        return self.port.getHost().port

    async def swaks(self, mech, password=PASSWORD):
        port = await self.start()
        out, err, code = await utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", 'exec swaks "$@" </dev/null', "swaks", "--server", f"127.0.0.1:{port}",
                        "--auth", mech, "--auth-user", USER, "--auth-password", password,
                        "--quit-after", "AUTH"],
            env=PATH_ENV)
        return code, out + err

    async def gsasl(self, mech, password=PASSWORD, tls=False, extra=()):
        port = await self.start()
        args = ["--smtp", f"--connect=127.0.0.1:{port}", "--hostname=mx.example.com",
                "--realm=mx.example.com",
                "-a", USER, "-p", password, "--mechanism", mech, *extra]
        args += ["--starttls", "--x509-ca-file="] if tls else ["--no-starttls"]
        # gsasl prompts on stdin for anything missing: give it /dev/null.
        out, err, code = await utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", 'exec gsasl "$@" </dev/null', "gsasl", *args], env=PATH_ENV)
        return code, out + err


class SwaksTests(InteropBase):
    async def check(self, mech):
        code, output = await self.swaks(mech)
        self.assertEqual(code, 0, output)
        self.assertEqual(self.factory.logins, [(mech, USER)])

    async def test_plain(self):
        """swaks authenticates with AUTH PLAIN."""
        await self.check("PLAIN")

    async def test_login(self):
        """swaks authenticates with AUTH LOGIN."""
        await self.check("LOGIN")

    async def test_cram_md5(self):
        """swaks authenticates with AUTH CRAM-MD5."""
        await self.check("CRAM-MD5")

    async def test_cram_sha1(self):
        """swaks authenticates with AUTH CRAM-SHA1."""
        await self.check("CRAM-SHA1")

    async def test_digest_md5(self):
        """swaks (Authen::SASL) authenticates with AUTH DIGEST-MD5."""
        await self.check("DIGEST-MD5")

    async def test_wrong_password(self):
        """swaks with a wrong password gets 535 and fails (exit 28)."""
        code, output = await self.swaks("CRAM-MD5", password="wrong")
        self.assertEqual(code, 28, output)
        self.assertIn(b"535", output)
        self.assertEqual(self.factory.logins, [])


class GsaslTests(InteropBase):
    async def check(self, mech, **kw):
        code, output = await self.gsasl(mech, **kw)
        self.assertEqual(code, 0, output)
        self.assertEqual(self.factory.logins, [(mech, USER)])

    async def test_scram_sha1(self):
        """gsasl authenticates with SCRAM-SHA-1 (keys derived from the clear text)."""
        await self.check("SCRAM-SHA-1")

    async def test_scram_sha256(self):
        """gsasl authenticates with SCRAM-SHA-256 against the stored keys."""
        await self.check("SCRAM-SHA-256")

    async def test_digest_md5(self):
        """gsasl authenticates with DIGEST-MD5, qop=auth."""
        await self.check("DIGEST-MD5", extra=["--quality-of-protection=qop-auth"])

    async def test_scram_wrong_password(self):
        """gsasl with a wrong SCRAM password is refused."""
        code, output = await self.gsasl("SCRAM-SHA-256", password="wrong")
        self.assertNotEqual(code, 0, output)
        self.assertEqual(self.factory.logins, [])


class GsaslTls13Tests(InteropBase):
    use_tls = True

    async def test_scram_sha256_plus_tls_exporter(self):
        """gsasl SCRAM-SHA-256-PLUS over STARTTLS with TLS 1.3 binds with tls-exporter."""
        code, output = await self.gsasl("SCRAM-SHA-256-PLUS", tls=True)
        self.assertEqual(code, 0, output)
        self.assertEqual(self.factory.logins, [("SCRAM-SHA-256-PLUS", USER)])
        self.assertEqual(self.factory.bindings, ["tls-exporter"])

    async def test_scram_sha1_plus_tls_exporter(self):
        """gsasl SCRAM-SHA-1-PLUS over STARTTLS with TLS 1.3."""
        code, output = await self.gsasl("SCRAM-SHA-1-PLUS", tls=True)
        self.assertEqual(code, 0, output)


class GsaslTls12Tests(InteropBase):
    use_tls = True
    tls_max = TLS1_2

    async def test_scram_sha256_plus_tls_unique(self):
        """gsasl SCRAM-SHA-256-PLUS over STARTTLS with TLS 1.2 binds with tls-unique."""
        code, output = await self.gsasl("SCRAM-SHA-256-PLUS", tls=True)
        self.assertEqual(code, 0, output)
        self.assertEqual(self.factory.logins, [("SCRAM-SHA-256-PLUS", USER)])
        self.assertEqual(self.factory.bindings, ["tls-unique"])

    async def test_plain_scram_over_tls(self):
        """gsasl SCRAM-SHA-256 with --no-cb over TLS (gs2 flag 'n') still works."""
        code, output = await self.gsasl("SCRAM-SHA-256", tls=True, extra=["--no-cb"])
        self.assertEqual(code, 0, output)


class GsaslMkpasswdTests(TestCase):
    async def test_mkpasswd_entries(self):
        """Entries made by gsasl --mkpasswd parse and give the same keys as ours (RFC 7677 salt)."""
        for mech, salt in (("SCRAM-SHA-256", "W22ZaJ0SNY7soEsUEjb6gQ=="),
                           ("SCRAM-SHA-1", "QSXCR+Q6sek8bf92")):
            for verbose in ([], ["--verbose"]):
                out = await utils.getProcessOutput(
                    "/bin/sh", ["-c", 'exec gsasl "$@" </dev/null', "gsasl", "--mkpasswd",
                                "--mechanism", mech, "--password", "pencil",
                                "--iteration-count", "4096", "--salt", salt, *verbose],
                    env=PATH_ENV)
                stored = schemes.parse_stored(out.decode().strip())
                self.assertTrue(schemes.verify_plain(stored, b"pencil"))
                self.assertEqual(stored.scram, schemes.scram_secrets_from_password(
                    b"pencil", stored.scram.hashname, base64.b64decode(salt), 4096))
