"""BATV signing (reference §9): prvs=0DDDhhhhhh=<sender>."""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery import batv

NOW = 86400 * 20_123 + 5000     # day 20123 -> DDD = 123


class SignTests(SynchronousTestCase):

    def test_format(self):
        """The tag is 0DDD plus the first 3 MD5 bytes of 0DDD+sender+key in hex."""
        digest = hashlib.md5(b"0123bob@example.orgsecret").hexdigest()[:6]
        self.assertEqual(batv.sign("bob@example.org", "secret", NOW),
                         f"prvs=0123{digest}=bob@example.org")

    def test_day_wraps_and_pads(self):
        """DDD is the day number modulo 1000, zero-padded."""
        signed = batv.sign("a@b.c", "k", 86400 * 7_007)
        self.assertTrue(signed.startswith("prvs=0007"), signed)

    def test_already_signed(self):
        """A prvs= sender is not signed twice."""
        self.assertEqual(batv.sign("prvs=0123abcdef=a@b.c", "k", NOW), "prvs=0123abcdef=a@b.c")

    def test_nosign_prefix(self):
        """``sb*-`` asks for no signature and is removed."""
        self.assertEqual(batv.sign("sb*-a@b.c", "k", NOW), "a@b.c")

    def test_null_sender(self):
        """The null sender stays null."""
        self.assertEqual(batv.sign("", "k", NOW), "")

    def test_verify(self):
        """A fresh signature verifies to the original address; a stale or
        forged one does not."""
        signed = batv.sign("bob@example.org", "secret", NOW)
        self.assertEqual(batv.verify(signed, "secret", NOW + 86400 * 7), "bob@example.org")
        self.assertIsNone(batv.verify(signed, "secret", NOW + 86400 * 8))
        self.assertIsNone(batv.verify(signed, "other", NOW))
        self.assertIsNone(batv.verify("bob@example.org", "secret", NOW))
