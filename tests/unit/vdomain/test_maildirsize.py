"""Maildir++ quota bookkeeping: the maildirsize file (reference §10)."""

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.vdomain import maildirsize as mds
from indimail.vdomain.maildirsize import MaildirSize, Usage
from indimail.vdomain.quota import Quota

NOW = 1_700_000_000


class FormatTests(SynchronousTestCase):
    def test_quota_line(self):
        """Line 1 is <bytes>S,<count>C, or <bytes>S when there is no count limit."""
        self.assertEqual(mds.quota_line(Quota(5000000, 100)), b"5000000S,100C\n")
        self.assertEqual(mds.quota_line(Quota(5000000, 0)), b"5000000S\n")

    def test_parse_sums_every_later_line(self):
        """The usage is the sum of all lines after the quota line, negatives included."""
        quota, usage = mds.parse(b"1000S,10C\n300 3\n100 1\n-50 -1\n\n")
        self.assertEqual(quota, Quota(1000, 10))
        self.assertEqual(usage, Usage(350, 3))

    def test_over_quota(self):
        """A message is refused when bytes or count would pass a non-zero limit."""
        self.assertFalse(mds.over_quota(Quota(1000, 0), Usage(900, 5), 100))
        self.assertTrue(mds.over_quota(Quota(1000, 0), Usage(900, 5), 101))
        self.assertTrue(mds.over_quota(Quota(0, 5), Usage(0, 5), 1))
        self.assertFalse(mds.over_quota(Quota(0, 0), Usage(10 ** 12, 10 ** 6), 10 ** 9))


class FileTests(SynchronousTestCase):
    def setUp(self):
        self.maildir = Path(self.mktemp())
        for sub in ("new", "cur", "tmp", ".Sent/cur"):
            (self.maildir / sub).mkdir(parents=True)
        (self.maildir / "new" / "1.x,S=120").write_bytes(b"x" * 5)
        (self.maildir / "cur" / "2.y:2,S").write_bytes(b"y" * 30)
        (self.maildir / ".Sent" / "cur" / "3.z,S=50:2,S").write_bytes(b"z")

    def test_recount_uses_size_in_name_and_folders(self):
        """The recount reads ,S= from names, stats the others, and counts folders."""
        self.assertEqual(mds.count_maildir(self.maildir), Usage(120 + 30 + 50, 3))

    def test_reserve_writes_header_recount_and_delivery(self):
        """A new file gets the quota line, the recount line and the delivery's line."""
        fits, before = MaildirSize(self.maildir).reserve(Quota(1000, 10), 40, NOW)
        self.assertTrue(fits)
        self.assertEqual(before, Usage(200, 3))
        self.assertEqual((self.maildir / "maildirsize").read_bytes(),
                         b"1000S,10C\n200 3\n40 1\n")

    def test_reserve_refuses_over_quota_and_leaves_file(self):
        """Over quota nothing is appended; the usage is reported."""
        size = MaildirSize(self.maildir)
        size.reserve(Quota(300, 0), 90, NOW)
        fits, usage = size.reserve(Quota(300, 0), 11, NOW)
        self.assertFalse(fits)
        self.assertEqual(usage, Usage(290, 4))
        self.assertEqual((self.maildir / "maildirsize").read_bytes(), b"300S\n200 3\n90 1\n")

    def test_release_takes_back(self):
        """A failed delivery's reservation is taken back with a negative line."""
        size = MaildirSize(self.maildir)
        size.reserve(Quota(1000, 0), 40, NOW)
        size.release(40)
        self.assertEqual(size.usage(Quota(1000, 0), NOW), Usage(200, 3))

    def test_recount_when_quota_changes_or_file_is_old(self):
        """A changed quota line or a file older than 43200 s is rebuilt from the Maildir."""
        path = self.maildir / "maildirsize"
        path.write_bytes(b"1000S\n999 9\n")
        os.utime(path, (NOW, NOW))
        self.assertEqual(MaildirSize(self.maildir).usage(Quota(1000), NOW + 10), Usage(999, 9))
        self.assertEqual(MaildirSize(self.maildir).usage(Quota(2000), NOW + 10), Usage(200, 3))
        self.assertEqual(path.read_bytes(), b"2000S\n200 3\n")
        path.write_bytes(b"2000S\n999 9\n")
        os.utime(path, (NOW, NOW))
        self.assertEqual(MaildirSize(self.maildir).usage(Quota(2000), NOW + 43201),
                         Usage(200, 3))

    def test_recount_when_file_is_large(self):
        """A file past 8192 bytes is rebuilt."""
        path = self.maildir / "maildirsize"
        path.write_bytes(b"1000S\n" + b"1 1\n" * 3000)
        os.utime(path, (NOW, NOW))
        self.assertEqual(MaildirSize(self.maildir).usage(Quota(1000), NOW), Usage(200, 3))
