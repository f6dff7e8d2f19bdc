"""The ESMTP client's pieces: SASL client exchanges checked against the
server side of indimail/auth, the mechanism choice, and the message scan
for 8BITMIME and SMTPUTF8."""

import base64
import hashlib
import hmac
import os
import tempfile

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from indimail.auth import scram
from indimail.auth.credentials import DigestMD5Credentials
from indimail.auth.mechanisms import parse_directives
from indimail.auth.schemes import ScramSecrets
from indimail.delivery import msgscan, saslclient


def run(coro):
    """Run a coroutine that never waits on the reactor."""
    d = defer.ensureDeferred(coro)
    results = []
    d.addBoth(results.append)
    result = results[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


async def inline(f, *args):
    return f(*args)


def secrets_for(password: bytes, hashname: str, salt=b"0123456789abcdef", i=4096):
    salted = hashlib.pbkdf2_hmac(hashname, password, salt, i)
    client_key = hmac.new(salted, b"Client Key", hashname).digest()
    return ScramSecrets(hashname, i, salt, hashlib.new(hashname, client_key).digest(),
                        hmac.new(salted, b"Server Key", hashname).digest())


class ChoiceTests(SynchronousTestCase):

    def test_upstream_order(self):
        """With AUTH_SMTP empty the choice follows indimail-mta's qmail-remote:
        SCRAM (-PLUS first), DIGEST-MD5, CRAM-RIPEMD … CRAM-MD5, PLAIN, LOGIN."""
        offered = ("LOGIN PLAIN CRAM-MD5 CRAM-SHA1 CRAM-SHA224 CRAM-SHA256 CRAM-SHA384 "
                   "CRAM-SHA512 CRAM-RIPEMD DIGEST-MD5 SCRAM-SHA-1 SCRAM-SHA-256 "
                   "SCRAM-SHA-1-PLUS SCRAM-SHA-256-PLUS")
        order = []
        disabled = set()
        while True:
            mech = saslclient.choose(offered, "", disabled, tls=True)
            if mech is None:
                break
            order.append(mech)
            disabled.add(mech)
        self.assertEqual(tuple(order), saslclient.AUTH_PREFERENCE)
        self.assertEqual(order[:5], ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
                                     "SCRAM-SHA-1", "DIGEST-MD5"])
        self.assertEqual(order[-3:], ["CRAM-MD5", "PLAIN", "LOGIN"])

    def test_plus_needs_tls(self):
        """-PLUS variants are never chosen (nor usable by name) without TLS."""
        self.assertEqual(saslclient.choose("SCRAM-SHA-256-PLUS SCRAM-SHA-256", ""),
                         "SCRAM-SHA-256")
        self.assertIsNone(saslclient.choose("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256-PLUS"))
        self.assertEqual(saslclient.choose("SCRAM-SHA-256-PLUS", "scram-sha-256-plus", tls=True),
                         "SCRAM-SHA-256-PLUS")

    def test_disable_variables(self):
        """Each mechanism has qmail-remote's DISABLE_* variable."""
        self.assertEqual(saslclient.DISABLE["CRAM-SHA512"], "DISABLE_CRAM_SHA512")
        self.assertEqual(saslclient.DISABLE["CRAM-RIPEMD"], "DISABLE_CRAM_RIPEMD")
        self.assertEqual(saslclient.DISABLE["SCRAM-SHA-256-PLUS"], "DISABLE_SCRAM_SHA256_PLUS")
        self.assertEqual(set(saslclient.DISABLE), set(saslclient.AUTH_PREFERENCE))


class MechanismTests(SynchronousTestCase):

    def test_cram_variants(self):
        """Every CRAM-* answer is ``user hexdigest`` with the named hash."""
        for name, hashname in (("CRAM-SHA224", "sha224"), ("CRAM-SHA512", "sha512"),
                               ("CRAM-RIPEMD", "ripemd160")):
            client = saslclient.make_client(name, "tim", "secret")
            answer = run(client.respond(b"<1.2@host>", inline))
            expected = hmac.new(b"secret", b"<1.2@host>", hashname).hexdigest().encode()
            self.assertEqual(answer, b"tim " + expected)

    def test_digest_md5_against_server(self):
        """The DIGEST-MD5 response verifies with the server's credentials
        class, and the server's rspauth is checked before the final line."""
        client = saslclient.DigestMD5("manny", "supersecret", "127.0.0.1",
                                      cnonce=lambda: b"cnonce42")
        answer = run(client.respond(b'realm="mx.example.com",nonce="abc",qop="auth",'
                                    b'charset=utf-8,algorithm=md5-sess', inline))
        d = parse_directives(answer)
        self.assertEqual(d["digest-uri"], b"smtp/127.0.0.1")
        self.assertEqual(d["realm"], b"mx.example.com")
        fields = {k: d[k] for k in ("nonce", "cnonce", "nc", "digest-uri", "realm")}
        fields["qop"] = b"auth"
        creds = DigestMD5Credentials(d["username"], d["response"], fields)
        self.assertTrue(creds.checkSecret(b"supersecret"))
        self.assertFalse(client.done())
        self.assertEqual(run(client.respond(b"rspauth=" + creds.rspauth, inline)), b"")
        self.assertTrue(client.done())

    def test_digest_md5_bad_rspauth(self):
        """A server that cannot prove it knows the password is refused."""
        client = saslclient.DigestMD5("manny", "pw", "127.0.0.1")
        run(client.respond(b'nonce="abc",qop="auth"', inline))
        with self.assertRaises(saslclient.SaslClientError):
            run(client.respond(b"rspauth=00000000000000000000000000000000", inline))

    def test_digest_md5_control_realm(self):
        """control/realm (passed in) wins over the server's realm."""
        client = saslclient.DigestMD5("manny", "pw", "10.0.0.1", realm="corp")
        answer = run(client.respond(b'realm="other",nonce="abc"', inline))
        self.assertEqual(parse_directives(answer)["realm"], b"corp")

    def scram_exchange(self, name, password, binding=None, server_binding=None):
        hashname = scram.MECHANISM_HASHES[name.removesuffix("-PLUS")]
        client = saslclient.Scram(name, "manny@example.com", password, binding)
        server = scram.ScramServer(hashname, plus=name.endswith("-PLUS"),
                                   binding=server_binding or binding,
                                   nonce=lambda: b"servernonce")
        user = server.client_first(client.initial())
        self.assertEqual(user, b"manny@example.com")
        first = server.server_first(secrets_for(b"supersecret", hashname))
        final = run(client.respond(first, inline))
        creds, server_final = server.client_final(final)
        return client, creds, server_final

    def test_scram_against_server(self):
        """SCRAM-SHA-1 and -256: the client's proof verifies with the server's
        stored keys, and the server's signature verifies at the client."""
        for name in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
            client, creds, server_final = self.scram_exchange(name, "supersecret")
            hashname = scram.MECHANISM_HASHES[name]
            self.assertTrue(creds.checkSecrets(secrets_for(b"supersecret", hashname)))
            self.assertEqual(run(client.respond(server_final, inline)), b"")
            self.assertTrue(client.done())

    def test_scram_wrong_password_fails_at_server(self):
        """A wrong password gives a proof the stored keys refuse."""
        _client, creds, _final = self.scram_exchange("SCRAM-SHA-256", "wrong")
        self.assertFalse(creds.checkSecrets(secrets_for(b"supersecret", "sha256")))

    def test_scram_plus_binding(self):
        """-PLUS sends ``p=<type>`` and the binding data; the server accepts
        the same data and refuses other data."""
        binding = ("tls-exporter", b"x" * 32)
        client, _creds, _final = self.scram_exchange("SCRAM-SHA-256-PLUS", "supersecret",
                                                     binding)
        self.assertTrue(client.initial().startswith(b"p=tls-exporter,,n="))
        with self.assertRaises(scram.ScramError):
            self.scram_exchange("SCRAM-SHA-256-PLUS", "supersecret", binding,
                                server_binding=("tls-exporter", b"y" * 32))

    def test_scram_forged_server_signature(self):
        """A server-final-message with the wrong signature is refused."""
        client, _creds, _final = self.scram_exchange("SCRAM-SHA-1", "supersecret")
        with self.assertRaises(saslclient.SaslClientError):
            run(client.respond(b"v=" + base64.b64encode(b"z" * 20), inline))
        self.assertFalse(client.done())

    def test_scram_bad_server_nonce(self):
        """A server nonce that does not extend the client's is refused."""
        client = saslclient.Scram("SCRAM-SHA-1", "u", "p", nonce=lambda: b"abc")
        with self.assertRaises(saslclient.SaslClientError):
            run(client.respond(b"r=zzz123,s=" + base64.b64encode(b"salt") + b",i=4096", inline))


class ScanTests(SynchronousTestCase):

    def write(self, data: bytes) -> str:
        fd, path = tempfile.mkstemp()
        os.write(fd, data)
        os.close(fd)
        self.addCleanup(os.unlink, path)
        return path

    def test_eight_bit_body(self):
        """An 8-bit byte anywhere (past the first chunk too) is found."""
        path = self.write(b"Subject: x\n\n" + b"a" * 200000 + "é\n".encode())
        self.assertEqual(msgscan.scan(path), (True, False))
        self.assertEqual(msgscan.scan(self.write(b"Subject: x\n\nplain\n")), (False, False))

    def test_eight_bit_in_queue_headers(self):
        """The queue's extra headers count as part of the message."""
        path = self.write(b"Subject: x\n\nplain\n")
        self.assertEqual(msgscan.scan(path, "X-Q: ü\n".encode()), (True, False))

    def test_received_with_utf8(self):
        """A folded Received field naming ``with UTF8ESMTPSA`` needs SMTPUTF8;
        the word in the body or another field does not."""
        needs = self.write(b"Received: from a (HELO b) (1.2.3.4)\n  by mx.example.com with "
                           b"UTF8ESMTPSA; 1 Jan 2026 00:00:00 -0000\nSubject: x\n\nbody\n")
        self.assertEqual(msgscan.scan(needs, eight_bit=False), (False, True))
        body_only = self.write(b"Received: from a by b with ESMTP; date\nX-Note: with UTF8ESMTP"
                               b"\n\nReceived: by x with UTF8SMTP\n")
        self.assertEqual(msgscan.scan(body_only), (False, False))

    def test_bytes_in_memory_scan_like_the_file(self):
        """A small message read once is judged as its file would be."""
        cases = [
            (b"Received: from a\n  by b with UTF8ESMTP; d\nSubject: x\n\nbody\n", b""),
            (b"Subject: x\n\nbody \xc3\xa9\n", b""),
            (b"Subject: x\n\nplain\n", "X-Q: ü\n".encode()),
            (b"\nReceived: by x with UTF8SMTP\n", b""),
            (b"Subject: no body", b"Received: by q with UTF8SMTP\n"),
        ]
        for data, qqeh in cases:
            self.assertEqual(msgscan.scan_bytes(data, qqeh),
                             msgscan.scan(self.write(data), qqeh), data)
        self.assertEqual(msgscan.scan_bytes(cases[0][0]), (False, True))
        self.assertEqual(msgscan.scan_bytes(cases[1][0]), (True, False))
