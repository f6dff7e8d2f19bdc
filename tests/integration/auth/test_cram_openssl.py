"""Every CRAM-* mechanism of indimail-smtpd checked by an independent
implementation: the HMAC is computed by the ``openssl dgst -hmac`` command
(not by our code) and sent over a real SMTP session (Python's smtplib) to
the real SMTPService on loopback, which must answer 235 and let the session
relay; a wrong secret must get 535.  swaks knows only CRAM-MD5 and
CRAM-SHA1 (no CRAM-SHA2/RIPEMD; ``--auth-map`` only renames); CRAM-SHA1 is
driven by swaks against the real service here too."""

from __future__ import annotations

import smtplib
import subprocess

from twisted.internet import threads

from tests.integration.smtp.test_tlsauth import PASSWORD, PATH_ENV, USER, TLSAuthBase

# mechanism → openssl dgst digest option
DIGESTS = {
    "CRAM-MD5": "-md5", "CRAM-SHA1": "-sha1", "CRAM-SHA224": "-sha224",
    "CRAM-SHA256": "-sha256", "CRAM-SHA384": "-sha384", "CRAM-SHA512": "-sha512",
    "CRAM-RIPEMD": "-ripemd160",
}
# OpenSSL 3 before 3.0.7 has RIPEMD160 only in the legacy provider
LEGACY = ["-provider", "legacy", "-provider", "default"]


def openssl_hmac(digest: str, secret: str, challenge: bytes) -> str:
    """HMAC(*secret*, *challenge*) in lower-case hex, computed by openssl."""
    error = b""
    for extra in ([], LEGACY):
        run = subprocess.run(["openssl", "dgst", digest, "-hmac", secret, "-r", *extra],
                             input=challenge, capture_output=True, env=PATH_ENV, timeout=30)
        if run.returncode == 0:
            return run.stdout.split()[0].decode("ascii").lower()
        error = run.stderr
    raise RuntimeError(f"openssl dgst {digest} failed: {error!r}")


class CramOpensslTests(TLSAuthBase):

    def session(self, mech: str, secret: str):
        """EHLO, AUTH *mech* answered with openssl's HMAC, then (on 235) a
        message to a remote domain.  Returns (advertised mechanisms, AUTH
        reply code, refused recipients or None)."""
        digest = DIGESTS[mech]
        with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                          timeout=30) as client:
            client.ehlo("client.example")
            offered = client.esmtp_features.get("auth", "").split()

            def answer(challenge=None):
                return f"{USER} {openssl_hmac(digest, secret, challenge)}"
            try:
                code, _ = client.auth(mech, answer, initial_response_ok=False)
            except smtplib.SMTPAuthenticationError as e:
                return offered, e.smtp_code, None
            refused = client.sendmail("a@sender.example", ["x@remote.example"],
                                      b"Subject: t\r\n\r\nbody\r\n")
            return offered, code, refused

    async def check(self, mech: str):
        await self.start()
        offered, code, refused = await threads.deferToThread(self.session, mech, PASSWORD)
        self.assertIn(mech, offered)
        self.assertEqual((code, refused), (235, {}))
        [(envelope, mess)] = self.queued()
        self.assertEqual(envelope.recipients, ["x@remote.example"])
        self.assertIn(f"({USER}@127.0.0.1)".encode(), mess)
        self.assertIn(b" ESMTPA; ", mess)
        _, code, _ = await threads.deferToThread(self.session, mech, "wrong")
        self.assertEqual(code, 535)
        self.assertEqual(len(self.queued()), 1)

    async def test_cram_md5(self):
        """CRAM-MD5 with openssl's HMAC-MD5: 235 and relaying; a wrong secret 535."""
        await self.check("CRAM-MD5")

    async def test_cram_sha1(self):
        """CRAM-SHA1 with openssl's HMAC-SHA1: 235 and relaying; a wrong secret 535."""
        await self.check("CRAM-SHA1")

    async def test_cram_sha224(self):
        """CRAM-SHA224 with openssl's HMAC-SHA224: 235 and relaying; a wrong secret 535."""
        await self.check("CRAM-SHA224")

    async def test_cram_sha256(self):
        """CRAM-SHA256 with openssl's HMAC-SHA256: 235 and relaying; a wrong secret 535."""
        await self.check("CRAM-SHA256")

    async def test_cram_sha384(self):
        """CRAM-SHA384 with openssl's HMAC-SHA384: 235 and relaying; a wrong secret 535."""
        await self.check("CRAM-SHA384")

    async def test_cram_sha512(self):
        """CRAM-SHA512 with openssl's HMAC-SHA512: 235 and relaying; a wrong secret 535."""
        await self.check("CRAM-SHA512")

    async def test_cram_ripemd(self):
        """CRAM-RIPEMD with openssl's HMAC-RIPEMD160: 235 and relaying; a wrong secret 535."""
        await self.check("CRAM-RIPEMD")

    async def test_disabled_mechanism_refused(self):
        """DISABLE_CRAM_SHA256 takes CRAM-SHA256 off EHLO and AUTH answers 504."""
        await self.start(env={"DISABLE_CRAM_SHA256": ""})
        offered, code, _ = await threads.deferToThread(self.session, "CRAM-SHA256", PASSWORD)
        self.assertNotIn("CRAM-SHA256", offered)
        self.assertIn("CRAM-SHA512", offered)
        self.assertEqual(code, 504)


class SwaksCramSha1Tests(TLSAuthBase):

    async def test_swaks_cram_sha1_relays(self):
        """swaks --auth CRAM-SHA1 (Digest::SHA) authenticates on the real
        service and relays; with a wrong password it gets 535."""
        await self.start()
        args = ("--auth", "CRAM-SHA1", "--auth-user", USER,
                "--from", "a@sender.example", "--to", "x@remote.example")
        code, output = await self.swaks(*args, "--auth-password", PASSWORD)
        self.assertEqual(code, 0, output)
        self.assertIn("235 ok, go ahead (#2.0.0)", output)
        self.assertEqual(len(self.queued()), 1)
        code, output = await self.swaks(*args, "--auth-password", "wrong")
        self.assertEqual(code, 28, output)
        self.assertIn("535 authorization failed (#5.7.1)", output)
        self.assertEqual(len(self.queued()), 1)
