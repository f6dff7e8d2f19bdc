"""The store's twisted.cred checker (SMTP AUTH against virtual users), on SQLite and MariaDB."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from pathlib import Path

from twisted.cred import error
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.auth import schemes
from indimail.auth.credentials import (CramCredentials, DigestMD5Credentials, ScramCredentials,
                                       UsernamePassword)
from indimail.auth.mechanisms import AuthContext, make_mechanism
from indimail.auth.realm import make_portal
from indimail.auth.sasl import AuthFailed, Challenge, Success
from indimail.config.environment import Environment
from indimail.config.home import Home
from indimail.smtp.authsetup import load_auth
from indimail.vdomain import credchecker, flags
from indimail.vdomain.admin import make_password
from indimail.vdomain.credchecker import (AccountRefused, ScramSources, StoreChecker,
                                          StoreUnavailable, login_address)
from indimail.vdomain.records import VLimits, VUser
from indimail.vdomain.store import VStore

from tests.integration.vdomain.helpers import mysql_backend, sqlite_backend

NOW = 1_700_000_000


def scram_proof(password: bytes, secrets, auth_message: bytes) -> bytes:
    """What a SCRAM client sends for *password* (RFC 5802 §3)."""
    salted = hashlib.pbkdf2_hmac(secrets.hashname, password, secrets.salt, secrets.iterations)
    client_key = hmac.new(salted, b"Client Key", secrets.hashname).digest()
    stored = hashlib.new(secrets.hashname, client_key).digest()
    signature = hmac.new(stored, auth_message, secrets.hashname).digest()
    return bytes(a ^ b for a, b in zip(client_key, signature))


class PureTests(SynchronousTestCase):
    def test_login_address_forms(self):
        """user@domain is kept, user%domain is Outlook's form, a bare user takes DEFAULT_DOMAIN."""
        self.assertEqual(login_address("bob@example.org", {}), "bob@example.org")
        self.assertEqual(login_address("bob%example.org", {}), "bob@example.org")
        self.assertEqual(login_address("bob", {"DEFAULT_DOMAIN": "example.org"}),
                         "bob@example.org")
        self.assertIsNone(login_address("bob", {}))
        self.assertIsNone(login_address("@example.org", {}))

    def test_refusal_rules(self):
        """NO_SMTP refuses SMTP, NO_POP/NO_IMAP their services, inactive needs ALLOW_INACTIVE."""
        user = VUser("bob", "example.org", pw_gid=flags.NO_SMTP)
        self.assertEqual(credchecker.refusal(user, {}), credchecker.NO_SMTP_TEXT)
        self.assertIsNone(credchecker.refusal(user, {}, "imap"))
        self.assertIsNotNone(credchecker.refusal(user.with_(pw_gid=flags.NO_IMAP), {}, "imap"))
        self.assertIsNotNone(credchecker.refusal(user.with_(pw_gid=flags.NO_POP), {}, "pop3"))
        inactive = user.with_(pw_gid=0, inactive=True)
        self.assertEqual(credchecker.refusal(inactive, {}), credchecker.INACTIVE_TEXT)
        self.assertIsNone(credchecker.refusal(inactive, {"ALLOW_INACTIVE": ""}))

    def test_expiry(self):
        """vlimits' domain and password expiry (epoch seconds) refuse after that time."""
        self.assertIsNone(credchecker.expiry_refusal(VLimits("d"), NOW))
        self.assertEqual(credchecker.expiry_refusal(VLimits("d", domain_expiry=NOW - 1), NOW),
                         credchecker.DOMAIN_EXPIRED_TEXT)
        self.assertEqual(credchecker.expiry_refusal(VLimits("d", passwd_expiry=NOW - 1), NOW),
                         credchecker.PASSWORD_EXPIRED_TEXT)
        self.assertIsNone(credchecker.expiry_refusal(VLimits("d", passwd_expiry=NOW + 1), NOW))


class CheckerTestsMixin:
    """The checker's behaviour; subclasses pick the backend."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.store = VStore(self.make_backend(), create_database=True)
        yield self.store.open()
        self.addCleanup(self.store.close)
        yield self.store.add_domain("example.org")
        yield self.store.add_alias_domain("example.net", "example.org")
        self.forms = {
            "bob": make_password("secret"),                                   # $6$
            "carol": make_password("secret", "SCRAM-SHA-256"),
            "dave": make_password("secret", cram=True),                       # {CRAM}
            "erin": make_password("secret", "SCRAM-SHA-1", cram=True),
            "norelay": make_password("secret"),
            "nosmtp": make_password("secret"),
            "gone": make_password("secret"),
        }
        gids = {"norelay": flags.NO_RELAY, "nosmtp": flags.NO_SMTP}
        for name, passwd in self.forms.items():
            yield self.store.add_user(VUser(name, "example.org", passwd, 1, gids.get(name, 0),
                                            name, f"/home/{name}", "NOQUOTA",
                                            inactive=(name == "gone")))
        from twisted.internet import reactor
        self.checker = StoreChecker(self.store, reactor, {}, now=lambda: NOW)

    def login(self, credentials):
        return self.checker.requestAvatarId(credentials)

    @defer.inlineCallbacks
    def test_plain_against_sha512_hash(self):
        """PLAIN/LOGIN passwords verify against the stored $6$ hash; the avatar may relay."""
        avatar = yield self.login(UsernamePassword(b"bob@example.org", b"secret"))
        self.assertEqual(bytes(avatar), b"bob@example.org")
        self.assertTrue(avatar.relay)
        yield self.assertFailure(self.login(UsernamePassword(b"bob@example.org", b"nope")),
                                 error.UnauthorizedLogin)

    @defer.inlineCallbacks
    def test_unknown_user_and_alias_domain(self):
        """An unknown user is an ordinary failure; a login at an alias domain finds the user."""
        yield self.assertFailure(self.login(UsernamePassword(b"zed@example.org", b"secret")),
                                 error.UnauthorizedLogin)
        avatar = yield self.login(UsernamePassword(b"bob@example.net", b"secret"))
        self.assertEqual(bytes(avatar), b"bob@example.net")

    @defer.inlineCallbacks
    def test_default_domain(self):
        """A login without a domain uses DEFAULT_DOMAIN from the environment."""
        self.checker.env = {"DEFAULT_DOMAIN": "example.org"}
        avatar = yield self.login(UsernamePassword(b"bob", b"secret"))
        self.assertEqual(bytes(avatar), b"bob@example.org")

    @defer.inlineCallbacks
    def test_plain_against_scram_entry(self):
        """A user with only SCRAM keys (vpasswd -m) still logs in with PLAIN."""
        avatar = yield self.login(UsernamePassword(b"carol@example.org", b"secret"))
        self.assertEqual(bytes(avatar), b"carol@example.org")

    @defer.inlineCallbacks
    def test_scram_uses_stored_keys(self):
        """SCRAM secrets come from the stored keys, and a proof made with the
        password verifies; a wrong password's proof does not."""
        secrets = yield self.checker.scramSecrets(b"carol@example.org", "sha256")
        stored = schemes.parse_stored(self.forms["carol"]).scram
        self.assertEqual(secrets, stored)
        message = b"n=carol,r=abc,r=abcdef,s=xx,i=4096,c=biws,r=abcdef"
        good = ScramCredentials(b"carol@example.org", "sha256", message,
                                scram_proof(b"secret", secrets, message))
        self.assertEqual(bytes((yield self.login(good))), b"carol@example.org")
        bad = ScramCredentials(b"carol@example.org", "sha256", message,
                               scram_proof(b"wrong", secrets, message))
        yield self.assertFailure(self.login(bad), error.UnauthorizedLogin)
        self.assertIsNone((yield self.checker.scramSecrets(b"bob@example.org", "sha256")))
        self.assertIsNone((yield self.checker.scramSecrets(b"zed@example.org", "sha256")))

    @defer.inlineCallbacks
    def test_scram_from_kept_clear_text(self):
        """With -C the clear text serves SCRAM of the other hash too."""
        secrets = yield self.checker.scramSecrets(b"erin@example.org", "sha256")
        message = b"n=erin,r=x"
        creds = ScramCredentials(b"erin@example.org", "sha256", message,
                                 scram_proof(b"secret", secrets, message))
        self.assertEqual(bytes((yield self.login(creds))), b"erin@example.org")

    @defer.inlineCallbacks
    def test_cram_needs_the_kept_clear_text(self):
        """CRAM-MD5 works for a user stored with -C and fails for a hash-only user."""
        challenge = b"<123.456@example.org>"
        digest = hmac.new(b"secret", challenge, "md5").hexdigest().encode()
        ok = CramCredentials(b"dave@example.org", challenge, digest, "CRAM-MD5", "md5")
        self.assertEqual(bytes((yield self.login(ok))), b"dave@example.org")
        hashed = CramCredentials(b"bob@example.org", challenge, digest, "CRAM-MD5", "md5")
        yield self.assertFailure(self.login(hashed), error.UnauthorizedLogin)

    @defer.inlineCallbacks
    def test_digest_md5(self):
        """DIGEST-MD5 verifies against the kept clear text and produces rspauth."""
        fields = {"realm": b"example.org", "nonce": b"n1", "cnonce": b"c1", "nc": b"00000001",
                  "qop": b"auth", "digest-uri": b"smtp/example.org"}
        probe = DigestMD5Credentials(b"dave@example.org", b"", fields)
        response = probe._value(b"secret", b"AUTHENTICATE")
        creds = DigestMD5Credentials(b"dave@example.org", response, fields)
        yield self.login(creds)
        self.assertEqual(len(creds.rspauth), 32)

    @defer.inlineCallbacks
    def test_no_relay_and_no_smtp(self):
        """NO_RELAY authenticates without relaying; NO_SMTP is refused with 553 after
        the password was checked (a wrong password stays a plain failure)."""
        avatar = yield self.login(UsernamePassword(b"norelay@example.org", b"secret"))
        self.assertFalse(avatar.relay)
        refused = yield self.assertFailure(
            self.login(UsernamePassword(b"nosmtp@example.org", b"secret")), AccountRefused)
        self.assertEqual(refused.smtp_reply, (553, "5.7.1", "Sorry, this account cannot use SMTP"))
        yield self.assertFailure(self.login(UsernamePassword(b"nosmtp@example.org", b"x")),
                                 error.UnauthorizedLogin)

    @defer.inlineCallbacks
    def test_inactive_user(self):
        """An inactive user is refused unless ALLOW_INACTIVE is set (in the service
        or the session environment)."""
        refused = yield self.assertFailure(
            self.login(UsernamePassword(b"gone@example.org", b"secret")), AccountRefused)
        self.assertEqual(refused.smtp_reply[2], "Sorry, this account is inactive")
        creds = UsernamePassword(b"gone@example.org", b"secret")
        creds.session_env = {"ALLOW_INACTIVE": "1"}
        self.assertEqual(bytes((yield self.login(creds))), b"gone@example.org")

    @defer.inlineCallbacks
    def test_domain_limits_expiry(self):
        """With DOMAIN_LIMITS an expired password (vlimits) is refused."""
        yield self.store.set_limits(VLimits("example.org", passwd_expiry=NOW - 10))
        yield self.login(UsernamePassword(b"bob@example.org", b"secret"))
        self.checker.env = {"DOMAIN_LIMITS": "1"}
        refused = yield self.assertFailure(
            self.login(UsernamePassword(b"bob@example.org", b"secret")), AccountRefused)
        self.assertEqual(refused.smtp_reply[2], "Sorry, your password has expired")

    @defer.inlineCallbacks
    def test_hashing_runs_off_the_reactor_thread(self):
        """Password verification runs in a worker thread, never the reactor's."""
        seen = []
        original = credchecker.verify

        def spy(stored, creds):
            seen.append(threading.current_thread() is threading.main_thread())
            return original(stored, creds)
        self.patch(credchecker, "verify", spy)
        yield self.login(UsernamePassword(b"bob@example.org", b"secret"))
        self.assertEqual(seen, [False])

    @defer.inlineCallbacks
    def test_smtp_mechanisms_through_the_portal(self):
        """Through the SASL mechanisms: PLAIN succeeds, NO_SMTP answers 553, and
        SCRAM-SHA-256 gets its salt from the store."""
        portal = make_portal([self.checker])
        ctx = AuthContext(portal, "mx.example.org", scram_source=self.checker,
                          nonce=lambda: b"servernonce")
        result = yield make_mechanism("PLAIN", ctx).start(b"\0bob@example.org\0secret")
        self.assertIsInstance(result, Success)
        self.assertEqual(result.avatar.username, "bob@example.org")
        result = yield make_mechanism("PLAIN", ctx).start(b"\0nosmtp@example.org\0secret")
        self.assertEqual(result, AuthFailed(553, "5.7.1", "Sorry, this account cannot use SMTP"))
        mech = make_mechanism("SCRAM-SHA-256", ctx)
        first = yield mech.start(b"n,,n=carol@example.org,r=clientnonce")
        self.assertIsInstance(first, Challenge)
        salt = schemes.parse_stored(self.forms["carol"]).scram.salt
        self.assertIn(b"s=" + base64.b64encode(salt), first.data)

    @defer.inlineCallbacks
    def test_lazy_open_and_unavailable_store(self):
        """A checker given an opener opens the store on first use; an opener that
        fails makes the login a temporary failure (454), retried next time."""
        from twisted.internet import reactor
        calls = []

        def failing():
            calls.append(1)
            return defer.fail(RuntimeError("database down"))
        checker = StoreChecker(failing, reactor, {})
        failure = yield self.assertFailure(
            checker.requestAvatarId(UsernamePassword(b"bob@example.org", b"secret")),
            StoreUnavailable)
        self.assertEqual(failure.smtp_reply[0], 454)
        self.flushLoggedErrors(RuntimeError)
        opened = StoreChecker(lambda: defer.succeed(self.store), reactor, {})
        avatar = yield opened.requestAvatarId(UsernamePassword(b"bob@example.org", b"secret"))
        self.assertEqual(bytes(avatar), b"bob@example.org")
        yield self.assertFailure(
            checker.requestAvatarId(UsernamePassword(b"bob@example.org", b"secret")),
            StoreUnavailable)
        self.assertEqual(len(calls), 2)
        self.flushLoggedErrors(RuntimeError)

    @defer.inlineCallbacks
    def test_smtp_auth_setup_uses_the_store(self):
        """The SMTP service's load_auth adds the store checker when the home has a
        store: AUTH is offered with every family and virtual users log in."""
        from twisted.internet import reactor
        home, env = self.home_and_env()
        self.addCleanup(credchecker.close_shared_stores)
        self.assertTrue(credchecker.store_configured(home, env))
        setup = load_auth(home, Environment(env), reactor)
        self.assertIn("scram-sha256", setup.capabilities())
        self.assertIn("cram", setup.capabilities())
        ctx = AuthContext(setup.portal, "mx", scram_source=setup.scram_source)
        result = yield make_mechanism("PLAIN", ctx).start(b"\0bob@example.org\0secret")
        self.assertIsInstance(result, Success)
        secrets = yield setup.scram_source.scramSecrets(b"carol@example.org", "sha256")
        self.assertEqual(secrets, schemes.parse_stored(self.forms["carol"]).scram)

    @defer.inlineCallbacks
    def test_scram_sources_ask_in_turn(self):
        """ScramSources returns the first source's keys that has the user."""
        class Empty:
            def scramSecrets(self, username, hashname):
                return defer.succeed(None)
        both = ScramSources([Empty(), None, self.checker])
        secrets = yield both.scramSecrets(b"carol@example.org", "sha256")
        self.assertEqual(secrets, schemes.parse_stored(self.forms["carol"]).scram)


class SqliteCheckerTests(CheckerTestsMixin, TestCase):
    def make_backend(self):
        self.backend = sqlite_backend(self)
        return self.backend

    def home_and_env(self):
        return Home(Path(self.backend.path).parent.parent), {}


class MysqlCheckerTests(CheckerTestsMixin, TestCase):
    def make_backend(self):
        self.backend = mysql_backend(self)
        return self.backend

    def home_and_env(self):
        b = self.backend
        return Home(Path(self.mktemp())), {"MYSQL_HOST": f"{b.host}:{b.user}::{b.port}",
                                           "MYSQL_DATABASE": b.database,
                                           "MYSQL_PASSWD": b.password}


class NoStoreTests(TestCase):
    def test_no_store_no_checker(self):
        """A home without a store (no SQLite file, no host.mysql) gets no store checker."""
        home = Home(Path(self.mktemp()))
        self.assertFalse(credchecker.store_configured(home, {}))
        from twisted.internet import reactor
        self.assertIsNone(load_auth(home, Environment({}), reactor))
