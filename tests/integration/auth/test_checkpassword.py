"""The checkpassword checker against a real /bin/sh program reading fd 3."""

import os

from twisted.cred import error
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from indimail.auth.checkpassword import CheckPasswordChecker, CheckPasswordTempFail, fd3_data
from indimail.auth.credentials import CramCredentials, DigestMD5Credentials
from indimail.auth.mechanisms import AuthContext, SaslUsernamePassword, make_mechanism
from indimail.auth.realm import IAuthenticatedUser, make_portal
from indimail.auth.sasl import Challenge, Success

SCRIPT = r"""#!/bin/sh
# checkpassword: user\0password\0response\0method\0 on fd 3
cat <&3 > "$DUMP"
user=$(tr '\0' '\n' < "$DUMP" | sed -n 1p)
pass=$(tr '\0' '\n' < "$DUMP" | sed -n 2p)
case "$user" in
  good) [ "$pass" = secret ] && exec "$@"; exit 1;;
  norelay) [ "$pass" = secret ] && exit 3; exit 1;;
  temp) exit 111;;
  hang) exec sleep 600;;
  chris) printf '%s' ea40f60335c427b5527b84dbabcdfffd >&6; exit 0;;
  cram) exit 0;;
  envcheck) [ "$TCPREMOTEIP" = 192.0.2.7 ] && exit 0; exit 1;;
esac
exit 1
"""


class CheckPasswordTests(TestCase):
    def setUp(self):
        base = self.mktemp()
        os.makedirs(base)
        self.script = os.path.join(base, "checkpw")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        os.chmod(self.script, 0o755)
        self.dump = os.path.join(base, "fd3")
        self.checker = CheckPasswordChecker(
            [self.script, "/bin/true"], reactor, env={"PATH": "/usr/bin:/bin", "DUMP": self.dump})

    def fd3(self):
        with open(self.dump, "rb") as f:
            return f.read()

    async def test_plain_good(self):
        """Exit 0 (via exec of the subprogram /bin/true) authenticates with relaying; fd 3 has qmail-smtpd's layout."""
        avatar_id = await self.checker.requestAvatarId(SaslUsernamePassword(b"good", b"secret", "PLAIN"))
        self.assertEqual((bytes(avatar_id), avatar_id.relay), (b"good", True))
        self.assertEqual(self.fd3(), b"good\0secret\0\0\x02\0")

    async def test_login_method_byte(self):
        """LOGIN credentials carry method number 1."""
        await self.checker.requestAvatarId(SaslUsernamePassword(b"good", b"secret", "LOGIN"))
        self.assertEqual(self.fd3(), b"good\0secret\0\0\x01\0")

    async def test_bad_password(self):
        """Any exit but 0, 3 and 111 is a bad login."""
        with self.assertRaises(error.UnauthorizedLogin):
            await self.checker.requestAvatarId(SaslUsernamePassword(b"good", b"wrong", "PLAIN"))

    async def test_no_relay(self):
        """Exit 3 authenticates an account that may not relay."""
        portal = make_portal([self.checker])
        _, avatar, _ = await portal.login(SaslUsernamePassword(b"norelay", b"secret", "PLAIN"),
                                          None, IAuthenticatedUser)
        self.assertEqual((avatar.username, avatar.relay), ("norelay", False))

    async def test_temporary_failure(self):
        """Exit 111 is a temporary failure with a 454 reply through the mechanism."""
        with self.assertRaises(CheckPasswordTempFail):
            await self.checker.requestAvatarId(SaslUsernamePassword(b"temp", b"x", "PLAIN"))
        mech = make_mechanism("PLAIN", AuthContext(make_portal([self.checker]), "mx"))
        result = await mech.start(b"\0temp\0x")
        self.assertEqual((result.code, result.enhanced), (454, "4.3.0"))

    async def test_cram_fd3(self):
        """CRAM-SHA256 passes user, challenge, hex response and method 6 on fd 3."""
        creds = CramCredentials(b"cram", b"<1.2@mx>", b"abcd", "CRAM-SHA256", "sha256")
        await self.checker.requestAvatarId(creds)
        self.assertEqual(self.fd3(), b"cram\0<1.2@mx>\0abcd\0\x06\0")

    async def test_digest_md5_rspauth_from_fd6(self):
        """DIGEST-MD5 passes the directives on fd 3 and takes rspauth from fd 6."""
        mech = make_mechanism("DIGEST-MD5", AuthContext(
            make_portal([self.checker]), "elwood.innosoft.com", nonce=lambda: b"OA6MG9tEQGm2hh"))
        await mech.start(None)
        result = await mech.respond(
            b'username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",nc=00000001,'
            b'cnonce="OA6MHXh6VqTrRk",digest-uri="imap/elwood.innosoft.com",'
            b'response=d388dad90d4bbd760a152321f2143af7,qop=auth')
        self.assertEqual(result, Challenge(b"rspauth=ea40f60335c427b5527b84dbabcdfffd"))
        self.assertIsInstance(await mech.respond(b""), Success)
        self.assertEqual(self.fd3(), (
            b"chris\0d388dad90d4bbd760a152321f2143af7\0digest-uri=imap/elwood.innosoft.com\n"
            b"nc=00000001\nnonce=OA6MG9tEQGm2hh\ncnonce=OA6MHXh6VqTrRk\nqop=auth\n"
            b"realm=elwood.innosoft.com\0\x0a\0"))

    async def test_session_environment(self):
        """The session's variables (TCPREMOTEIP …) reach the program through the mechanism."""
        portal = make_portal([self.checker])
        mech = make_mechanism("PLAIN", AuthContext(portal, "mx", session_env={"TCPREMOTEIP": "192.0.2.7"}))
        self.assertIsInstance(await mech.start(b"\0envcheck\0pw"), Success)
        mech = make_mechanism("PLAIN", AuthContext(portal, "mx", session_env={"TCPREMOTEIP": "192.0.2.8"}))
        self.assertEqual((await mech.start(b"\0envcheck\0pw")).code, 535)

    async def test_hung_program_is_killed(self):
        """A program still running after the timeout is killed: temporary failure."""
        clock = task.Clock()
        checker = CheckPasswordChecker([self.script, "/bin/true"], reactor, timeout=5, clock=clock,
                                       env={"PATH": "/usr/bin:/bin", "DUMP": self.dump})
        d = checker.requestAvatarId(SaslUsernamePassword(b"hang", b"x", "PLAIN"))
        clock.advance(5)
        with self.assertRaises(CheckPasswordTempFail):
            await d

    async def test_nul_cannot_forge_fields(self):
        """A NUL inside LOGIN's user name cannot smuggle a password field to the program."""
        mech = make_mechanism("LOGIN", AuthContext(make_portal([self.checker]), "mx"))
        await mech.start(None)
        await mech.respond(b"good\0secret\0\0\x02")
        self.assertEqual((await mech.respond(b"anything")).code, 501)
        with self.assertRaises(error.UnauthorizedLogin):
            await self.checker.requestAvatarId(SaslUsernamePassword(b"good\0secret", b"x", "PLAIN"))
        self.assertFalse(os.path.exists(self.dump))

    async def test_missing_program(self):
        """A program that cannot be run is a temporary failure, not a crash."""
        checker = CheckPasswordChecker(["/nonexistent/checkpw", "/bin/true"], reactor)
        with self.assertRaises(CheckPasswordTempFail):
            await checker.requestAvatarId(SaslUsernamePassword(b"good", b"secret", "PLAIN"))

    def test_fd3_data_plain_default(self):
        """Plain Twisted UsernamePassword credentials are sent as PLAIN."""
        from indimail.auth.credentials import UsernamePassword
        self.assertEqual(fd3_data(UsernamePassword(b"u", b"p")), b"u\0p\0\0\x02\0")
        self.assertEqual(fd3_data(DigestMD5Credentials(b"u", b"r", {}))[:6], b"u\0r\0di")
