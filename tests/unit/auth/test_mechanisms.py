"""SASL mechanisms, each driven by a client that is not our code where one exists."""

import base64
import hashlib
import hmac
import smtplib

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from indimail.auth import schemes
from indimail.auth.credentials import IUsernamePassword
from indimail.auth.mechanisms import AuthContext, CRAM_HASHES, make_mechanism, parse_directives
from indimail.auth.realm import IAuthenticatedUser, make_portal
from indimail.auth.sasl import (AuthFailed, Challenge, MalformedResponse, Success,
                                decode_response, encode_challenge)

from .helpers import SmtplibDriver, context

USERS = {
    b"alice@example.com": "{CRAM}wonderland",
    b"bob@example.com": schemes.crypt_password(b"builder", "$6$bobsalt"),
}


class SmtplibTests(SynchronousTestCase):
    """Python's smtplib (an independent client) against PLAIN, LOGIN and CRAM-MD5."""

    def login(self, mechanism, user, password, entries=USERS, initial_response_ok=True):
        client = SmtplibDriver(self, context(entries))
        client.user, client.password = user, password
        auth = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login,
                "CRAM-MD5": client.auth_cram_md5}[mechanism]
        try:
            code, _ = client.auth(mechanism, auth, initial_response_ok=initial_response_ok)
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code, client.result
        return code, client.result

    def test_plain_initial_response(self):
        """AUTH PLAIN with an initial response authenticates a crypt user."""
        code, result = self.login("PLAIN", "bob@example.com", "builder")
        self.assertEqual(code, 235)
        self.assertEqual(result.avatar.username, "bob@example.com")
        self.assertTrue(IAuthenticatedUser.providedBy(result.avatar))

    def test_plain_after_empty_challenge(self):
        """AUTH PLAIN without initial response gets an empty 334 and then succeeds."""
        code, _ = self.login("PLAIN", "alice@example.com", "wonderland", initial_response_ok=False)
        self.assertEqual(code, 235)

    def test_plain_wrong_password(self):
        """A wrong PLAIN password is a 535 5.7.8."""
        code, result = self.login("PLAIN", "bob@example.com", "builder!")
        self.assertEqual((code, result.enhanced), (535, "5.7.8"))

    def test_login(self):
        """AUTH LOGIN: Username:/Password: prompts, success and failure."""
        self.assertEqual(self.login("LOGIN", "bob@example.com", "builder")[0], 235)
        self.assertEqual(self.login("LOGIN", "bob@example.com", "nope")[0], 535)
        self.assertEqual(self.login("LOGIN", "carol@example.com", "x")[0], 535)

    def test_cram_md5(self):
        """AUTH CRAM-MD5 with smtplib's HMAC-MD5 answer to our challenge."""
        code, result = self.login("CRAM-MD5", "alice@example.com", "wonderland")
        self.assertEqual(code, 235)
        self.assertEqual(result.mechanism, "CRAM-MD5")
        self.assertEqual(self.login("CRAM-MD5", "alice@example.com", "wonderlan")[0], 535)

    def test_cram_needs_clear_text(self):
        """CRAM-MD5 cannot authenticate a user stored only as a crypt hash."""
        self.assertEqual(self.login("CRAM-MD5", "bob@example.com", "builder")[0], 535)


class CramTests(SynchronousTestCase):
    def run_cram(self, name, password, user=b"alice@example.com", now=1700000000):
        mech = make_mechanism(name, context(USERS, now=lambda: now, nonce=lambda: b"abcdef"))
        challenge = self.successResultOf(mech.start(None))
        self.assertIsInstance(challenge, Challenge)
        digest = hmac.new(password, challenge.data, CRAM_HASHES[name]).hexdigest()
        return challenge, self.successResultOf(mech.respond(user + b" " + digest.encode()))

    def test_every_cram_hash(self):
        """Each CRAM-* mechanism accepts HMAC-<hash>(password, challenge) in hex."""
        for name in CRAM_HASHES:
            _, result = self.run_cram(name, b"wonderland")
            self.assertIsInstance(result, Success, name)
            _, result = self.run_cram(name, b"Wonderland")
            self.assertEqual(result.code, 535, name)

    def test_ripemd_is_ripemd160(self):
        """CRAM-RIPEMD uses RIPEMD-160 (20-byte digest)."""
        self.assertEqual(hashlib.new(CRAM_HASHES["CRAM-RIPEMD"]).digest_size, 20)

    def test_challenge_form(self):
        """The challenge is qmail-smtpd's <unique.time@hostname>."""
        challenge, _ = self.run_cram("CRAM-SHA1", b"wonderland")
        self.assertRegex(challenge.data, rb"^<\d+\.1700000000@mail\.example\.com>$")

    def test_malformed(self):
        """A CRAM answer without a hex digest, or an initial response, is a 501."""
        mech = make_mechanism("CRAM-MD5", context(USERS))
        self.successResultOf(mech.start(None))
        self.assertEqual(self.successResultOf(mech.respond(b"alice nothex!")).code, 501)
        mech = make_mechanism("CRAM-MD5", context(USERS))
        self.assertEqual(self.successResultOf(mech.start(b"x")).code, 501)


class DigestMD5Tests(SynchronousTestCase):
    """RFC 2831 §4 example: chris / secret at elwood.innosoft.com."""

    RESPONSE = (b'charset=utf-8,username="chris",realm="elwood.innosoft.com",'
                b'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
                b'digest-uri="imap/elwood.innosoft.com",'
                b'response=d388dad90d4bbd760a152321f2143af7,qop=auth')

    def mech(self, password="{CRAM}secret"):
        return make_mechanism("DIGEST-MD5", context({b"chris": password},
                                                    hostname="elwood.innosoft.com",
                                                    nonce=lambda: b"OA6MG9tEQGm2hh"))

    def test_rfc2831_example(self):
        """The RFC's digest-response verifies and the server answers its rspauth."""
        mech = self.mech()
        challenge = self.successResultOf(mech.start(None))
        fields = parse_directives(challenge.data)
        self.assertEqual(fields["nonce"], b"OA6MG9tEQGm2hh")
        self.assertEqual(fields["qop"], b"auth")
        self.assertEqual(fields["realm"], b"elwood.innosoft.com")
        final = self.successResultOf(mech.respond(self.RESPONSE))
        self.assertEqual(final, Challenge(b"rspauth=ea40f60335c427b5527b84dbabcdfffd"))
        done = self.successResultOf(mech.respond(b""))
        self.assertIsInstance(done, Success)
        self.assertEqual(done.avatar.username, "chris")

    def test_wrong_password(self):
        """The same response against another password is a 535."""
        mech = self.mech("{CRAM}secreT")
        self.successResultOf(mech.start(None))
        self.assertEqual(self.successResultOf(mech.respond(self.RESPONSE)).code, 535)

    def test_replayed_nonce_and_bad_nc(self):
        """A response for another nonce, a nonce count other than 1 or qop other than auth is refused."""
        for bad in (self.RESPONSE.replace(b"OA6MG9tEQGm2hh", b"OA6MG9tEQGm2hX"),
                    self.RESPONSE.replace(b"nc=00000001", b"nc=00000002"),
                    self.RESPONSE.replace(b"qop=auth", b"qop=auth-int"),
                    self.RESPONSE.replace(b'cnonce="OA6MHXh6VqTrRk"', b'cnonce="a\nrealm=x"'),
                    b"username=chris"):
            mech = self.mech()
            self.successResultOf(mech.start(None))
            self.assertEqual(self.successResultOf(mech.respond(bad)).code, 501, bad)


class SaslHelpersTests(SynchronousTestCase):
    def test_decode(self):
        """Client lines are base64; '*' cancels, '=' is an empty initial response."""
        self.assertEqual(decode_response(b"AGJvYgBidWlsZGVy"), b"\0bob\0builder")
        self.assertEqual(decode_response(b"="), b"")
        self.assertEqual(self.assertRaises(MalformedResponse, decode_response, b"*").failure.code, 501)
        self.assertRaises(MalformedResponse, decode_response, b"!!!")
        self.assertEqual(encode_challenge(b"Username:"), b"VXNlcm5hbWU6")

    def test_reply_text(self):
        """An AuthFailed renders as an SMTP reply line with its enhanced code."""
        self.assertEqual(AuthFailed(535, "5.7.8", "authorization failed").reply(),
                         b"535 authorization failed (#5.7.8)")

    def test_finished_mechanism(self):
        """A mechanism that has answered success refuses further input."""
        mech = make_mechanism("PLAIN", context(USERS))
        self.assertIsInstance(self.successResultOf(mech.start(b"\0alice@example.com\0wonderland")), Success)
        self.assertEqual(self.successResultOf(mech.respond(b"x")).code, 501)

    def test_unknown_mechanism(self):
        """Asking for a mechanism we do not implement is a KeyError for the protocol to map."""
        self.assertRaises(KeyError, make_mechanism, "GSSAPI", context(USERS))

    def test_plain_malformed(self):
        """PLAIN without both NULs, user or password is 501."""
        for bad in (b"alice", b"\0alice@example.com\0", b"\0\0pw"):
            mech = make_mechanism("PLAIN", context(USERS))
            self.assertEqual(self.successResultOf(mech.start(bad)).code, 501)

    def test_base64_challenge_round_trip(self):
        """encode_challenge output decodes back to the raw challenge."""
        self.assertEqual(base64.b64decode(encode_challenge(b"\x00\xffabc")), b"\x00\xffabc")


class BrokenCheckerTests(SynchronousTestCase):
    def test_unexpected_error_is_temporary(self):
        """A checker that blows up gives a logged 454 4.3.0, never a hang or a crash."""
        @implementer(ICredentialsChecker)
        class Broken:
            credentialInterfaces = (IUsernamePassword,)

            def requestAvatarId(self, credentials):
                return defer.fail(RuntimeError("database on fire"))

        mech = make_mechanism("PLAIN", AuthContext(make_portal([Broken()]), "mx"))
        result = self.successResultOf(mech.start(b"\0u\0p"))
        self.assertEqual((result.code, result.enhanced), (454, "4.3.0"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
