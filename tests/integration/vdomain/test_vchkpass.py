"""vchkpass as a program: the fd 3 protocol, qmail-smtpd and Dovecot conventions,
against SQLite and MariaDB."""

from __future__ import annotations

import hmac
import time
import sys
from pathlib import Path

from twisted.cred import error
from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase

from indimail.auth.checkpassword import CheckPasswordChecker
from indimail.auth.credentials import CramCredentials, DigestMD5Credentials
from indimail.auth.mechanisms import SaslUsernamePassword
from indimail.config.home import Home
from indimail.testing import child_env
from indimail.vdomain import flags
from indimail.vdomain.admin import make_password
from indimail.vdomain.backend import SqliteBackend
from indimail.vdomain.records import VUser
from indimail.vdomain.store import VStore

from .helpers import mysql_backend

VCHKPASS = [sys.executable, "-m", "indimail.cli.vchkpass"]

DUMP = """#!/bin/sh
out="$(dirname "$0")/dumped"
{ echo "HOME=$HOME"; echo "userdb_uid=$userdb_uid"; echo "EXTRA=$EXTRA"; echo "ARGS=$*"; } > "$out"
cat <&3 > "$out.fd3" 2>/dev/null
exit 0
"""


class VchkpassMixin:
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.root = Path(self.mktemp()).absolute()
        self.home = Home(self.root / "home")
        (self.home.path / "control").mkdir(parents=True)
        self.env = {"INDIMAIL_HOME": str(self.home.path)}
        self.backend = self.make_backend()
        self.store = VStore(self.backend, create_database=True)
        yield self.store.open()
        self.addCleanup(self.store.close)
        yield self.store.add_domain("example.org")
        users = {"bob": 0, "norelay": flags.NO_RELAY, "nosmtp": flags.NO_SMTP,
                 "noimap": flags.NO_IMAP, "gone": 0}
        self.bob_dir = self.root / "bob"
        self.bob_dir.mkdir()
        for name, gid in users.items():
            yield self.store.add_user(VUser(name, "example.org", make_password("secret"), 1, gid,
                                            name, str(self.root / name), "NOQUOTA",
                                            inactive=(name == "gone")))
        yield self.store.add_user(VUser("dave", "example.org", make_password("secret", cram=True),
                                        1, 0, "dave", str(self.root / "dave"), "NOQUOTA"))
        self.dump = self.root / "dump.sh"
        self.dump.write_text(DUMP)
        self.dump.chmod(0o755)

    def vchkpass(self, data: bytes, *args: str, env: dict | None = None):
        """Run vchkpass *args* with *data* on descriptor 3: (stdout, stderr, code)."""
        path = self.root / "fd3.bin"
        path.write_bytes(data)
        return utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", f'exec "$@" 3<"{path}"', "sh", *VCHKPASS, *args],
            env=child_env({**self.env, **(env or {})}), reactor=reactor)

    @defer.inlineCallbacks
    def test_smtp_convention(self):
        """Under qmail-smtpd a good login exits 0 (3 for NO_RELAY); a bad one runs the
        next program, /bin/false at the end of the chain."""
        out, err, code = yield self.vchkpass(b"bob@example.org\0secret\0\0\x02\0", "/bin/false")
        self.assertEqual(code, 0, err)
        _, err, code = yield self.vchkpass(b"norelay@example.org\0secret\0\0\x02\0", "/bin/false")
        self.assertEqual(code, 3, err)
        _, err, code = yield self.vchkpass(b"bob@example.org\0wrong\0\0\x02\0", "/bin/false")
        self.assertEqual(code, 1, err)
        _, err, code = yield self.vchkpass(b"zed@example.org\0secret\0\0\x02\0", "/bin/false")
        self.assertEqual(code, 1, err)

    @defer.inlineCallbacks
    def test_failure_chains_to_the_next_program(self):
        """A failed login hands the same bytes on descriptor 3 to the next checker."""
        data = b"bob@example.org\0wrong\0\0\x02\0"
        _, err, code = yield self.vchkpass(data, str(self.dump), "/bin/false")
        self.assertEqual(code, 0, err)
        self.assertEqual((self.root / "dumped.fd3").read_bytes(), data)
        self.assertIn("ARGS=/bin/false", (self.root / "dumped").read_text())

    @defer.inlineCallbacks
    def test_refused_accounts_print_553(self):
        """NO_SMTP and inactive users get upstream's 553 lines on stdout and exit 1."""
        out, _, code = yield self.vchkpass(b"nosmtp@example.org\0secret\0\0", "/bin/false")
        self.assertEqual((code, out), (1, b"553-Sorry, this account cannot use SMTP (#5.7.1)\r\n"))
        out, _, code = yield self.vchkpass(b"gone@example.org\0secret\0\0", "/bin/false")
        self.assertEqual((code, out), (1, b"553-Sorry, this account is inactive (#5.7.1)\r\n"))

    @defer.inlineCallbacks
    def test_cram_md5_with_method_byte(self):
        """A CRAM-MD5 exchange (challenge, digest, method 3) verifies against the -C secret."""
        challenge = b"<1.2@mx>"
        digest = hmac.new(b"secret", challenge, "md5").hexdigest().encode()
        _, err, code = yield self.vchkpass(b"dave@example.org\0" + challenge + b"\0" + digest +
                                      b"\0\x03\0", "/bin/false")
        self.assertEqual(code, 0, err)
        _, err, code = yield self.vchkpass(b"bob@example.org\0" + challenge + b"\0" + digest +
                                      b"\0\x03\0", "/bin/false")
        self.assertEqual(code, 1, err)

    @defer.inlineCallbacks
    def test_native_checkpassword(self):
        """As Dovecot's checkpassword: success execs argv[1:] with HOME, userdb_uid
        and EXTRA; failure exits 1 without running it."""
        env = {"NATIVE_CHECKPASSWORD": "1", "HOME": "/nowhere"}
        _, err, code = yield self.vchkpass(b"bob@example.org\0secret\0" + b"1700000000\0",
                                      str(self.dump), "extra-arg", env=env)
        self.assertEqual(code, 0, err)
        dumped = (self.root / "dumped").read_text().splitlines()
        self.assertIn(f"HOME={self.bob_dir}", dumped)
        self.assertIn(f"userdb_uid={self.bob_dir.stat().st_uid}", dumped)
        self.assertIn("EXTRA=userdb_uid userdb_gid", dumped)
        self.assertIn("ARGS=extra-arg", dumped)
        (self.root / "dumped").unlink()
        _, err, code = yield self.vchkpass(b"bob@example.org\0wrong\0", str(self.dump), env=env)
        self.assertEqual(code, 1, err)
        self.assertFalse((self.root / "dumped").exists())

    @defer.inlineCallbacks
    def test_imap_login_opens_relay(self):
        """A Dovecot IMAP login from TCPREMOTEIP writes the relay table (POP-before-SMTP)
        and lastauth; a NO_IMAP user is refused."""
        env = {"NATIVE_CHECKPASSWORD": "1", "SERVICE": "imap", "TCPREMOTEIP": "10.9.8.7"}
        _, err, code = yield self.vchkpass(b"bob@example.org\0secret\0", str(self.dump), env=env)
        self.assertEqual(code, 0, err)
        self.assertTrue((yield self.store.relay_allowed("10.9.8.7", time.time())))
        last = yield self.store.last_auth("bob", "example.org", "imap")
        self.assertEqual(last[2], "10.9.8.7")
        out, _, code = yield self.vchkpass(b"noimap@example.org\0secret\0", str(self.dump), env=env)
        self.assertEqual((code, out), (1, b"553-Sorry, this account cannot use IMAP (#5.7.1)\r\n"))

    @defer.inlineCallbacks
    def test_database_down_is_temporary(self):
        """When the database cannot be reached vchkpass says 454 and exits 111."""
        out, _, code = yield self.vchkpass(b"bob@example.org\0secret\0", "/bin/false",
                                      env={"MYSQL_HOST": "127.0.0.1:root:x:1"})
        self.assertEqual(code, 111)
        self.assertTrue(out.startswith(b"454-"), out)

    @defer.inlineCallbacks
    def test_behind_the_smtp_checkpassword_checker(self):
        """The SMTP service's checkpassword checker runs vchkpass: PLAIN, NO_RELAY
        (exit 3) and DIGEST-MD5 with rspauth on descriptor 6 all work."""
        checker = CheckPasswordChecker(VCHKPASS + ["/bin/false"], reactor,
                                       env=child_env(self.env))
        avatar = yield checker.requestAvatarId(
            SaslUsernamePassword(b"bob@example.org", b"secret", "PLAIN"))
        self.assertTrue(avatar.relay)
        avatar = yield checker.requestAvatarId(
            SaslUsernamePassword(b"norelay@example.org", b"secret", "LOGIN"))
        self.assertFalse(avatar.relay)
        yield self.assertFailure(checker.requestAvatarId(
            SaslUsernamePassword(b"bob@example.org", b"bad", "PLAIN")), error.UnauthorizedLogin)
        challenge = b"<9.9@mx>"
        digest = hmac.new(b"secret", challenge, "sha256").hexdigest().encode()
        yield checker.requestAvatarId(CramCredentials(b"dave@example.org", challenge, digest,
                                                      "CRAM-SHA256", "sha256"))
        fields = {"realm": b"example.org", "nonce": b"n1", "cnonce": b"c1", "nc": b"00000001",
                  "qop": b"auth", "digest-uri": b"smtp/example.org"}
        probe = DigestMD5Credentials(b"dave@example.org", b"", fields)
        creds = DigestMD5Credentials(b"dave@example.org", probe._value(b"secret", b"AUTHENTICATE"),
                                     fields)
        yield checker.requestAvatarId(creds)
        self.assertEqual(creds.rspauth, probe._value(b"secret", b""))


class SqliteVchkpassTests(VchkpassMixin, TestCase):
    def make_backend(self):
        return SqliteBackend(str(self.home.domains / "indimail.db"))


class MysqlVchkpassTests(VchkpassMixin, TestCase):
    def make_backend(self):
        backend = mysql_backend(self)
        (self.home.control / "host.mysql").write_text(
            f"{backend.host}:{backend.user}::{backend.port}\n")
        self.env.update(MYSQL_DATABASE=backend.database, MYSQL_PASSWD=backend.password)
        return backend
