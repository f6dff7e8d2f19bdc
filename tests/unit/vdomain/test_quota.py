from twisted.trial.unittest import SynchronousTestCase

from indimail.vdomain import flags
from indimail.vdomain.quota import Quota, QuotaError, format_quota, parse_quota
from indimail.vdomain.records import VUser


class ParseQuotaTests(SynchronousTestCase):
    def test_noquota(self):
        """NOQUOTA is no size limit and no count limit."""
        self.assertEqual(parse_quota("NOQUOTA"), Quota(0, 0))
        self.assertTrue(parse_quota("NOQUOTA").unlimited)

    def test_noquota_with_count(self):
        """A count after NOQUOTA still limits the number of messages."""
        self.assertEqual(parse_quota("NOQUOTA,100"), Quota(0, 100))

    def test_plain_bytes_and_count(self):
        """<bytes>,<count> reads both numbers."""
        self.assertEqual(parse_quota("5242880,1000"), Quota(5242880, 1000))

    def test_suffixes_are_powers_of_1024(self):
        """k, m and g (any case) multiply by 1024, 1024**2, 1024**3, as parse_quota.c."""
        self.assertEqual(parse_quota("10k").size, 10 * 1024)
        self.assertEqual(parse_quota("5M").size, 5 * 1024 ** 2)
        self.assertEqual(parse_quota("2g,50").size, 2 * 1024 ** 3)
        self.assertEqual(parse_quota("2g,50").count, 50)

    def test_maildirplusplus_form(self):
        """The Maildir++ form 5000000S,100C reads as size and count."""
        self.assertEqual(parse_quota("5000000S,100C"), Quota(5000000, 100))

    def test_garbage_is_an_error(self):
        """A quota that is neither a number nor NOQUOTA is refused."""
        self.assertRaises(QuotaError, parse_quota, "lots")
        self.assertRaises(QuotaError, parse_quota, "100,many")
        self.assertRaises(QuotaError, parse_quota, "-5")

    def test_format_round_trip(self):
        """format_quota writes what parse_quota reads back."""
        for q in (Quota(0, 0), Quota(0, 7), Quota(1048576, 0), Quota(1048576, 200)):
            self.assertEqual(parse_quota(format_quota(q)), q)
        self.assertEqual(format_quota(Quota(0, 0)), "NOQUOTA")
        self.assertEqual(format_quota(Quota(1024, 10)), "1024,10")


class FlagTests(SynchronousTestCase):
    def test_values_of_indimail_h(self):
        """The pw_gid bits have indimail.h's values."""
        self.assertEqual((flags.NO_PASSWD_CHNG, flags.NO_POP, flags.NO_WEBMAIL, flags.NO_IMAP,
                          flags.BOUNCE_MAIL, flags.NO_RELAY, flags.NO_DIALUP, flags.QA_ADMIN,
                          flags.V_OVERRIDE, flags.NO_SMTP, flags.V_USER0, flags.V_USER3),
                         (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200,
                          0x400, 0x2000))

    def test_names_and_user_has(self):
        """flag_names lists the set bits; VUser.has tests one; VUser.quota parses pw_shell."""
        gid = flags.NO_POP | flags.NO_SMTP
        self.assertEqual(flags.flag_names(gid), ["NO_POP", "NO_SMTP"])
        user = VUser("a", "example.com", pw_gid=gid, pw_shell="1m,5")
        self.assertTrue(user.has(flags.NO_SMTP))
        self.assertFalse(user.has(flags.NO_IMAP))
        self.assertEqual(user.quota, Quota(1048576, 5))
        self.assertEqual(user.address, "a@example.com")
