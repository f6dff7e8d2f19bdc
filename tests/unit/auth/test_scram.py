"""SCRAM and SCRAM-PLUS: RFC 5802 §5 and RFC 7677 §3 exchanges byte for byte, and a client written from the RFC."""

import base64
import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from indimail.auth import schemes
from indimail.auth.mechanisms import make_mechanism
from indimail.auth.sasl import Challenge, Success

from .helpers import context


def stored_for(password, hashname, salt_b64, iterations=4096):
    secrets = schemes.scram_secrets_from_password(password, hashname,
                                                  base64.b64decode(salt_b64), iterations)
    return schemes.format_scram(secrets, "")


class ScramClient:
    """The client side of RFC 5802 §3, written from the RFC for these tests."""

    def __init__(self, hashname, user, password, nonce, gs2=b"n,,", cbdata=b""):
        self.hashname, self.user, self.password = hashname, user, password
        self.nonce, self.gs2, self.cbdata = nonce, gs2, cbdata

    def first(self):
        self.bare = b"n=" + self.user + b",r=" + self.nonce
        return self.gs2 + self.bare

    def final(self, server_first):
        attrs = dict(a.split(b"=", 1) for a in server_first.split(b","))
        salted = hashlib.pbkdf2_hmac(self.hashname, self.password,
                                     base64.b64decode(attrs[b"s"]), int(attrs[b"i"]))
        without_proof = (b"c=" + base64.b64encode(self.gs2 + self.cbdata)
                         + b",r=" + attrs[b"r"])
        auth_message = self.bare + b"," + server_first + b"," + without_proof
        client_key = hmac.new(salted, b"Client Key", self.hashname).digest()
        stored_key = hashlib.new(self.hashname, client_key).digest()
        signature = hmac.new(stored_key, auth_message, self.hashname).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hashname).digest()
        self.expected_final = b"v=" + base64.b64encode(
            hmac.new(server_key, auth_message, self.hashname).digest())
        return without_proof + b",p=" + base64.b64encode(proof)


class RfcVectorTests(SynchronousTestCase):
    def exchange(self, name, entries, server_nonce, messages, **kw):
        mech = make_mechanism(name, context(entries, nonce=lambda: server_nonce, **kw))
        c1, s1, c2, s2 = messages
        self.assertEqual(self.successResultOf(mech.start(c1)), Challenge(s1))
        self.assertEqual(self.successResultOf(mech.respond(c2)), Challenge(s2))
        done = self.successResultOf(mech.respond(b""))
        self.assertIsInstance(done, Success)
        return done

    def test_rfc5802_sha1(self):
        """RFC 5802 §5: the server sends exactly the RFC's messages for user/pencil."""
        entries = {b"user": stored_for(b"pencil", "sha1", "QSXCR+Q6sek8bf92")}
        done = self.exchange("SCRAM-SHA-1", entries, b"3rfcNHYJY1ZVvWVs7j", (
            b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="))
        self.assertEqual(done.avatar.username, "user")

    def test_rfc7677_sha256(self):
        """RFC 7677 §3: the SCRAM-SHA-256 exchange for user/pencil, byte for byte."""
        entries = {b"user": stored_for(b"pencil", "sha256", "W22ZaJ0SNY7soEsUEjb6gQ==")}
        self.exchange("SCRAM-SHA-256", entries, b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", (
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))

    def test_rfc7677_from_clear_text(self):
        """A {CRAM} (clear-text) user can log in with SCRAM-SHA-256 too."""
        mech = make_mechanism("SCRAM-SHA-256", context({b"user": "{CRAM}pencil"}))
        client = ScramClient("sha256", b"user", b"pencil", b"clientnonce")
        server_first = self.successResultOf(mech.start(client.first())).data
        final = self.successResultOf(mech.respond(client.final(server_first)))
        self.assertEqual(final, Challenge(client.expected_final))
        self.assertIsInstance(self.successResultOf(mech.respond(b"")), Success)


SEED = ("{SCRAM-SHA-256}4096,HWvKDMG1R9hSSt/e,thk3p9gV604V9A2chgmW/ovPgucUtFRhHJgfeWi2pJ4=,"
        "IvIc99nIBYdKFqW+ZTz1Ioz5nIxWXJDegzPlkq41tic=,"
        "$5$7.Jwtq6QiQaLsguq$RXUJkrI5PUhtqGa4jKGbLPZaLmJiGdpqXhe68qtqyE/")
USERS = {b"manny@example.com": SEED}
BINDING = ("tls-unique", b"\x01\x02finished-message\xff")


class ScramTests(SynchronousTestCase):
    def scram(self, name, password=b"supersecret", gs2=b"n,,", cbdata=b"", user=b"manny@example.com",
            hashname="sha256", **kw):
        mech = make_mechanism(name, context(USERS, **kw))
        client = ScramClient(hashname, user, password, b"c-nonce-123", gs2, cbdata)
        first = self.successResultOf(mech.start(client.first()))
        if not isinstance(first, Challenge):
            return first
        result = self.successResultOf(mech.respond(client.final(first.data)))
        if isinstance(result, Challenge):
            self.assertEqual(result.data, client.expected_final)
            result = self.successResultOf(mech.respond(b""))
        return result

    def test_seed_user(self):
        """The seed's manny@example.com logs in with SCRAM-SHA-256 and 'supersecret'."""
        self.assertIsInstance(self.scram("SCRAM-SHA-256"), Success)

    def test_wrong_password_and_unknown_user(self):
        """A wrong password and an unknown user both fail 535 after the proof."""
        self.assertEqual(self.scram("SCRAM-SHA-256", password=b"x").code, 535)
        self.assertEqual(self.scram("SCRAM-SHA-256", user=b"nobody@example.com").code, 535)

    def test_unknown_user_salt_is_stable(self):
        """An unknown user gets the same salt each time, so probing does not reveal who exists."""
        firsts = []
        for _ in range(2):
            mech = make_mechanism("SCRAM-SHA-256", context(USERS))
            firsts.append(self.successResultOf(mech.start(b"n,,n=ghost,r=abc")).data.split(b",")[1])
        self.assertEqual(firsts[0], firsts[1])

    def test_sha1_user_cannot_use_sha256_keys(self):
        """Stored SHA-256 keys do not serve SCRAM-SHA-1."""
        self.assertEqual(self.scram("SCRAM-SHA-1", hashname="sha1").code, 535)

    def test_plus_with_binding(self):
        """SCRAM-SHA-256-PLUS succeeds when c= carries the session's binding data."""
        result = self.scram("SCRAM-SHA-256-PLUS", gs2=b"p=tls-unique,,", cbdata=BINDING[1],
                          channel_binding=lambda: BINDING, plus_advertised=True)
        self.assertIsInstance(result, Success)

    def test_plus_with_other_binding_data(self):
        """Binding data from another TLS session (a man in the middle) fails 535."""
        result = self.scram("SCRAM-SHA-256-PLUS", gs2=b"p=tls-unique,,", cbdata=b"other",
                          channel_binding=lambda: BINDING, plus_advertised=True)
        self.assertEqual(result.code, 535)

    def test_plus_wrong_type_or_no_tls(self):
        """A -PLUS exchange with another binding type, or without TLS, fails."""
        self.assertEqual(self.scram("SCRAM-SHA-256-PLUS", gs2=b"p=tls-exporter,,",
                                  channel_binding=lambda: BINDING).code, 535)
        self.assertEqual(self.scram("SCRAM-SHA-256-PLUS", gs2=b"p=tls-unique,,").code, 535)
        self.assertEqual(self.scram("SCRAM-SHA-256-PLUS", gs2=b"n,,",
                                  channel_binding=lambda: BINDING).code, 535)

    def test_downgrade_detected(self):
        """Flag 'y' on plain SCRAM while -PLUS was advertised is a downgrade: 535."""
        self.assertEqual(self.scram("SCRAM-SHA-256", gs2=b"y,,", channel_binding=lambda: BINDING,
                                  plus_advertised=True).code, 535)
        self.assertIsInstance(self.scram("SCRAM-SHA-256", gs2=b"y,,"), Success)

    def test_p_flag_on_plain_scram(self):
        """Plain SCRAM refuses a client that asks for channel binding."""
        self.assertEqual(self.scram("SCRAM-SHA-256", gs2=b"p=tls-unique,,", cbdata=BINDING[1],
                                  channel_binding=lambda: BINDING).code, 535)

    def test_tampered_nonce(self):
        """A client-final with another nonce fails."""
        mech = make_mechanism("SCRAM-SHA-256", context(USERS))
        client = ScramClient("sha256", b"manny@example.com", b"supersecret", b"abc")
        first = self.successResultOf(mech.start(client.first())).data
        final = client.final(first).replace(b",r=abc", b",r=abd")
        self.assertEqual(self.successResultOf(mech.respond(final)).code, 535)

    def test_malformed_messages(self):
        """Syntax errors in either client message are 501."""
        for bad in (b"n,,", b"x,,n=u,r=abc", b"n,,r=abc,n=u", b"n,,n=a=2Xb,r=abc"):
            mech = make_mechanism("SCRAM-SHA-256", context(USERS))
            self.assertEqual(self.successResultOf(mech.start(bad)).code, 501, bad)
        mech = make_mechanism("SCRAM-SHA-256", context(USERS))
        self.successResultOf(mech.start(b"n,,n=manny@example.com,r=abc"))
        self.assertEqual(self.successResultOf(mech.respond(b"c=biws,r=abc")).code, 501)

    def test_empty_initial_response(self):
        """Without an initial response SCRAM first sends an empty challenge."""
        mech = make_mechanism("SCRAM-SHA-1", context(USERS))
        self.assertEqual(self.successResultOf(mech.start(None)), Challenge(b""))

    def test_escaped_username(self):
        """saslname escapes =2C and =3D decode to ',' and '='."""
        entries = {b"a,b=c": "{CRAM}pw"}
        mech = make_mechanism("SCRAM-SHA-1", context(entries))
        client = ScramClient("sha1", b"a=2Cb=3Dc", b"pw", b"n1")
        first = self.successResultOf(mech.start(client.first())).data
        self.successResultOf(mech.respond(client.final(first)))
        done = self.successResultOf(mech.respond(b""))
        self.assertEqual(done.avatar.username, "a,b=c")
