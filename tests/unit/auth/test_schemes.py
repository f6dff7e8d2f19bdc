"""Password schemes: crypt(3) vectors and IndiMail's {SCRAM-…} stored form."""

import base64

from twisted.trial.unittest import SynchronousTestCase

from indimail.auth import schemes

# The platform document's "vpasswd -m SCRAM-SHA-256 manny@example.com supersecret".
SEED_SCRAM = ("{SCRAM-SHA-256}4096,HWvKDMG1R9hSSt/e,thk3p9gV604V9A2chgmW/ovPgucUtFRhHJgfeWi2pJ4=,"
              "IvIc99nIBYdKFqW+ZTz1Ioz5nIxWXJDegzPlkq41tic=,"
              "$5$7.Jwtq6QiQaLsguq$RXUJkrI5PUhtqGa4jKGbLPZaLmJiGdpqXhe68qtqyE/")
# ... and "vpasswd -C -m SCRAM-SHA-256" (hex salted password and clear text kept).
SEED_SCRAM_CLEAR = ("{SCRAM-SHA-256}4096,fIne4ExD9h3vufYZ,k9LD3a/7yk3u7o5tVPTRR4IYHqgd7khpwbKLzvNGnos=,"
                    "LCuD6/yMc5cjmCMrBAj+es27icwu5eoI5Drqmh4P+mQ=:"
                    "a8bac1a24c7aa2725630c9ab6813a631b366c79c6bc959bf344d3af8e685a375:supersecret,"
                    "$5$j59A2PxyHYy5q5OE$wzif22gTmb3SPhbtQN6Z9jzvNB5JA54He8pN.midpu7")


class CryptTests(SynchronousTestCase):
    def test_sha256_crypt_vector(self):
        """$5$ hashes match the SHA-crypt specification's vector."""
        self.assertEqual(schemes.crypt_password(b"Hello world!", "$5$saltstring"),
                         "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5")

    def test_sha512_crypt_vector(self):
        """$6$ hashes match the SHA-crypt specification's vector."""
        self.assertEqual(
            schemes.crypt_password(b"Hello world!", "$6$saltstring"),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1")

    def test_md5_crypt(self):
        """$1$ (MD5-crypt) entries verify the right password only."""
        stored = schemes.parse_stored("$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/")
        self.assertTrue(schemes.verify_plain(stored, b"password"))
        self.assertFalse(schemes.verify_plain(stored, b"Password"))

    def test_crypt_entry(self):
        """A bare crypt hash verifies PLAIN but cannot serve CRAM or SCRAM."""
        stored = schemes.parse_stored("$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/"
                                      "O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1")
        self.assertTrue(schemes.verify_plain(stored, b"Hello world!"))
        self.assertFalse(schemes.verify_plain(stored, b"hello world!"))
        self.assertFalse(stored.can_verify_cram())
        self.assertEqual(stored.scram_hashes(), set())


class ScramStoredFormTests(SynchronousTestCase):
    def test_seed_entry_parses(self):
        """The seed's {SCRAM-SHA-256} entry yields its iteration, salt, keys and crypt part."""
        stored = schemes.parse_stored(SEED_SCRAM)
        self.assertEqual(stored.scram.hashname, "sha256")
        self.assertEqual(stored.scram.iterations, 4096)
        self.assertEqual(stored.scram.salt, base64.b64decode("HWvKDMG1R9hSSt/e"))
        self.assertEqual(stored.crypt_hash, "$5$7.Jwtq6QiQaLsguq$RXUJkrI5PUhtqGa4jKGbLPZaLmJiGdpqXhe68qtqyE/")
        self.assertIsNone(stored.cleartext)
        self.assertEqual(stored.scram_hashes(), {"sha256"})

    def test_seed_keys_derive_from_password(self):
        """StoredKey/ServerKey of the seed entry are those of 'supersecret' (RFC 5802 §3)."""
        stored = schemes.parse_stored(SEED_SCRAM)
        derived = schemes.scram_secrets_from_password(b"supersecret", "sha256",
                                                      stored.scram.salt, 4096)
        self.assertEqual(derived, stored.scram)

    def test_seed_entry_verifies_plain(self):
        """PLAIN/LOGIN against the seed entry accept 'supersecret' only."""
        stored = schemes.parse_stored(SEED_SCRAM)
        self.assertTrue(schemes.verify_plain(stored, b"supersecret"))
        self.assertFalse(schemes.verify_plain(stored, b"supersecreT"))

    def test_seed_entry_with_clear_text(self):
        """The -C form carries the clear text, so CRAM and every SCRAM hash work."""
        stored = schemes.parse_stored(SEED_SCRAM_CLEAR)
        self.assertEqual(stored.cleartext, b"supersecret")
        self.assertTrue(stored.can_verify_cram())
        self.assertEqual(stored.scram_hashes(), {"sha1", "sha256"})

    def test_format_round_trip(self):
        """format_scram writes the seed's layout back byte for byte."""
        stored = schemes.parse_stored(SEED_SCRAM_CLEAR)
        self.assertEqual(schemes.format_scram(stored.scram, stored.crypt_hash, b"supersecret"),
                         SEED_SCRAM_CLEAR)
        plain = schemes.parse_stored(SEED_SCRAM)
        self.assertEqual(schemes.format_scram(plain.scram, plain.crypt_hash), SEED_SCRAM)

    def test_cram_and_errors(self):
        """{CRAM} keeps clear text; unknown schemes and bad SCRAM fields are errors."""
        self.assertEqual(schemes.parse_stored("{CRAM}pw:with:colons").cleartext, b"pw:with:colons")
        self.assertRaises(schemes.SchemeError, schemes.parse_stored, "{MD4}abc")
        self.assertRaises(schemes.SchemeError, schemes.parse_stored, "{SCRAM-SHA-1}4096,abc")
        self.assertRaises(schemes.SchemeError, schemes.parse_stored, "{SCRAM-SHA-1}x,a,b,c,d")
        self.assertRaises(schemes.SchemeError, schemes.parse_stored, "")


class HashPasswordTests(SynchronousTestCase):
    def test_each_scheme_verifies(self):
        """hash_password's output parses back and verifies the same password only."""
        for scheme in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SHA512-CRYPT", "SHA256-CRYPT", "CRAM"):
            stored = schemes.parse_stored(schemes.hash_password(b"s3cret", scheme, iterations=64))
            self.assertTrue(schemes.verify_plain(stored, b"s3cret"), scheme)
            self.assertFalse(schemes.verify_plain(stored, b"s3creT"), scheme)

    def test_keep_cleartext(self):
        """keep_cleartext writes the -C form, which allows CRAM."""
        stored = schemes.parse_stored(schemes.hash_password(b"pw", keep_cleartext=True, iterations=64))
        self.assertEqual(stored.cleartext, b"pw")
        self.assertEqual(stored.scram.iterations, 64)
        self.assertRaises(schemes.SchemeError, schemes.hash_password, b"pw", "MD4")

    def test_gsasl_verbose_form(self):
        """gsasl --mkpasswd --verbose's trailing hex salted password is not taken for a crypt hash."""
        stored = schemes.parse_stored(
            "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
            "D+CSWLOshSulAsxiupA+qs2/fTE=,1d96ee3a529b5a5f9e47c01f229a2cb8a6e15f7d")
        self.assertIsNone(stored.crypt_hash)
        self.assertTrue(schemes.verify_plain(stored, b"pencil"))
