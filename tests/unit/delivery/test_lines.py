"""The Return-Path, Delivered-To and From_ lines qmail-local writes."""

from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery.lines import ctime, dtline, gfrom, quote2, rpline, ufline


class LineTests(SynchronousTestCase):

    def test_dtline(self):
        """Delivered-To carries the lspawn local part and the domain."""
        self.assertEqual(dtline("example.com-alice", "example.com"),
                         b"Delivered-To: example.com-alice@example.com\n")

    def test_rpline(self):
        """Return-Path puts the sender in angle brackets."""
        self.assertEqual(rpline("bob@example.org"), b"Return-Path: <bob@example.org>\n")

    def test_rpline_null_sender(self):
        """The null sender gives ``Return-Path: <>``."""
        self.assertEqual(rpline(""), b"Return-Path: <>\n")

    def test_quoting(self):
        """A local part with special characters is quoted like qmail's quote2."""
        self.assertEqual(quote2('john doe@example.org'), '"john doe"@example.org')
        self.assertEqual(quote2("a..b@x"), '"a..b"@x')
        self.assertEqual(quote2("plain@x"), "plain@x")

    def test_newlines_replaced(self):
        """Newlines inside an address become underscores."""
        self.assertEqual(dtline("a\nb", "x"), b"Delivered-To: a_b@x\n")

    def test_ctime(self):
        """qmail's date format, UTC, zero-padded day."""
        self.assertEqual(ctime(0), "Thu Jan 01 00:00:00 1970\n")

    def test_ufline(self):
        """The mbox From_ line; blanks in the sender become dashes."""
        self.assertEqual(ufline("a b@x", 0), b"From a-b@x Thu Jan 01 00:00:00 1970\n")
        self.assertEqual(ufline("", 0), b"From MAILER-DAEMON Thu Jan 01 00:00:00 1970\n")

    def test_gfrom(self):
        """Lines starting with ``From `` after any ``>`` need quoting."""
        self.assertTrue(gfrom(b"From me\n"))
        self.assertTrue(gfrom(b">>From me\n"))
        self.assertFalse(gfrom(b"From: me\n"))
        self.assertFalse(gfrom(b" From me\n"))
