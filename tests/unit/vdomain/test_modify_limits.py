"""vlimit's options and layout, vmoduser's quota arithmetic and flags, QUOTAWARN."""

from twisted.trial.unittest import SynchronousTestCase

from indimail.vdomain import flags as F
from indimail.vdomain.admin import AdminError
from indimail.vdomain.limits import LimitError, apply_options, render
from indimail.vdomain.maildirsize import Usage
from indimail.vdomain.modify import new_quota, parse_vmoduser
from indimail.vdomain.quota import Quota
from indimail.vdomain.records import VLimits
from indimail.vdomain.warning import warn_percent, warning_message

NOW = 1_700_000_000


class LimitTests(SynchronousTestCase):
    def test_seed_example_default_quota_and_no_pop(self):
        """vlimit -q 52428800 then -g p: the seed's 'Setting limits' output."""
        limits = apply_options(VLimits("example.com"), [("-q", "52428800")], NOW)
        limits = apply_options(limits, [("-g", "p")], NOW)
        text = render(limits)
        self.assertIn("Default User Quota   : 52428800\n", text)
        self.assertIn("GID Flags:\n  NO_POP\nFlags for non postmaster accounts:\n", text)
        self.assertTrue(text.startswith("Domain Expiry Date   : Never Expires\n"
                                        "Password Expiry Date : Never Expires\n"))
        self.assertTrue(text.endswith("  default quota         : ALLOW_CREATE ALLOW_MODIFY \n"))

    def test_permissions_pack_mailing_list_bits(self):
        """-l/-u/-o share perm_maillist, 3 bits each; letters a, c, m, d."""
        limits = apply_options(VLimits("d"), [("-l", "c"), ("-u", "m"), ("-o", "a"),
                                              ("-p", "d")], NOW)
        self.assertEqual(limits.perm_maillist, 0x01 | (0x02 << 3) | (0x07 << 6))
        text = render(limits)
        self.assertIn("  mailinglist users     : ALLOW_CREATE DENY_MODIFY  ALLOW_DELETE \n", text)
        self.assertIn("  pop account           : ALLOW_CREATE ALLOW_MODIFY DENY_DELETE  \n", text)

    def test_counts_expiry_and_errors(self):
        """Counts, expiry in days, NOQUOTA default quota; conflicting options fail."""
        limits = apply_options(VLimits("d"), [("-P", "10"), ("-n", "2"), ("-q", "NOQUOTA")], NOW)
        self.assertEqual((limits.maxpopaccounts, limits.domain_expiry, limits.defaultquota),
                         (10, NOW + 2 * 86400, -1))
        self.assertIn("Default User Quota   : unlimited\n", render(limits))
        self.assertRaises(LimitError, apply_options, VLimits("d"),
                          [("-e", "01012030000000"), ("-n", "3")], NOW)
        self.assertRaises(LimitError, apply_options, VLimits("d"), [("-e", "tomorrow")], NOW)


class VmoduserTests(SynchronousTestCase):
    def test_quota_absolute_relative_and_noquota(self):
        """-q size, +size, -size, NOQUOTA; the message count is kept."""
        self.assertEqual(new_quota("NOQUOTA", "5M"), "5242880")
        self.assertEqual(new_quota("5242880,100", "+1M"), "6291456,100")
        self.assertEqual(new_quota("5242880", "-1048576"), "4194304")
        self.assertEqual(new_quota("5242880", "NOQUOTA"), "NOQUOTA")
        self.assertRaises(AdminError, new_quota, "1000", "-5000")
        self.assertRaises(AdminError, new_quota, "1000", "lots")

    def test_flag_options(self):
        """The flag options map to reference §6's pw_gid bits; -t toggles, -x clears."""
        change = parse_vmoduser([("-p", ""), ("-i", ""), ("-s", ""), ("-b", ""), ("-r", ""),
                                 ("-t", ""), ("-c", "New Name"), ("-e", "$1$x$y")])
        self.assertEqual(change.set_flags, F.NO_POP | F.NO_IMAP | F.NO_SMTP | F.BOUNCE_MAIL
                         | F.NO_RELAY)
        self.assertTrue(change.toggle)
        self.assertEqual((change.gecos, change.encrypted), ("New Name", "$1$x$y"))
        self.assertTrue(parse_vmoduser([("-x", "")]).clear_flags)
        self.assertEqual(parse_vmoduser([("-m", "SCRAM-SHA-256"), ("-P", "pw")]).scheme,
                         "SCRAM-SHA-256")


class WarningTests(SynchronousTestCase):
    def test_quotawarn_percentages(self):
        """QUOTAWARNn: the usage must exceed the percentage (size or count)."""
        quota = Quota(1000, 10)
        env = {"QUOTAWARN1": "90", "QUOTAWARN2": "50"}
        self.assertIsNone(warn_percent(env, quota, Usage(400, 1)))
        self.assertEqual(warn_percent(env, quota, Usage(600, 1)), 50)
        self.assertEqual(warn_percent({"QUOTAWARN10": "80"}, quota, Usage(0, 9)), 80)
        self.assertIsNone(warn_percent({}, quota, Usage(999, 9)))
        self.assertIsNone(warn_percent(env, Quota(0, 0), Usage(10**9, 1)))

    def test_message_text(self):
        """The seven-argument text of upstream's sample overquota.sh."""
        text = warning_message("bob@example.org", "example.org", Usage(900, 3), Quota(1000, 0),
                               80, NOW).decode()
        self.assertTrue(text.startswith("From: postmaster@example.org\nTo: bob@example.org\n"
                                        "Subject: [Warning] Your Mail Box is 80% Full\n"))
        self.assertIn("Your Quota is: 1000S,0C\nYour Usage is: 900S,3C\n", text)
