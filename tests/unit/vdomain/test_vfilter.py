"""vfilter's pure parts: header numbers, comparisons, bounce actions, vcfilter -s."""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.vdomain import vfilter as V
from indimail.vdomain.records import VFilter

HEADERS = [("From", "carol <carol@remote.test>"), ("To", "bob@example.org, x@y.z"),
           ("Subject", "failure notice: delivery failed"),
           ("X-Bogosity", "yes, spamicity=0.999616, version=1.2.4"),
           ("X-Spam-Rating", "7.5")]


def rule(header, comparison, keyword, destination="Spam", bounce="0", emailid="bob@example.org"):
    return VFilter(emailid, 2, "f", header, comparison, keyword, destination, bounce, 0)


class HeaderListTests(SynchronousTestCase):
    def test_builtin_numbers_match_vcfilter_manual(self):
        """The seed's numbers: 2 Subject, 28 X-QHPSI, 33 X-Bogosity, 45 Original-Recipient."""
        self.assertEqual((V.HEADERS[2], V.HEADERS[28], V.HEADERS[33], V.HEADERS[45]),
                         ("Subject", "X-QHPSI", "X-Bogosity", "Original-Recipient"))

    def test_headerlist_file_replaces_the_list(self):
        """A headerlist file (comments and blank lines skipped) gives the numbering."""
        path = Path(self.mktemp())
        path.write_text("# mine\nSubject\n\nX-Custom  # note\n")
        self.assertEqual(V.header_list(path), ("Subject", "X-Custom"))
        self.assertEqual(V.header_list(Path(self.mktemp())), V.HEADERS)


class MatchTests(SynchronousTestCase):
    def match(self, r, headers=HEADERS):
        return V.rule_matches(r, headers, V.HEADERS, "bob@example.org")

    def test_equals_is_a_prefix_test_like_upstream(self):
        """Comparison 0 compares the keyword's length, case-blind (upstream case_diffb)."""
        self.assertTrue(self.match(rule(2, 0, "Failure Notice")))
        self.assertFalse(self.match(rule(2, 0, "notice")))

    def test_contains_and_does_not_contain(self):
        """1 finds the keyword anywhere; 2 matches when the header lacks it."""
        self.assertTrue(self.match(rule(2, 1, "DELIVERY")))
        self.assertFalse(self.match(rule(2, 2, "delivery")))
        self.assertTrue(self.match(rule(2, 2, "viagra")))
        self.assertFalse(self.match(rule(19, 2, "x")), "absent header never matches")

    def test_starts_and_ends_with(self):
        """3 and 4: the seed's spam rule on X-Bogosity starts with 'Yes, spamicity='."""
        self.assertTrue(self.match(rule(33, 3, "Yes, spamicity=")))
        self.assertFalse(self.match(rule(33, 3, "No,")))
        self.assertTrue(self.match(rule(33, 4, "version=1.2.4")))

    def test_numerical_expression(self):
        """7: %p is the header's number; a true expression matches."""
        self.assertTrue(self.match(rule(32, 7, "%p>5")))
        self.assertFalse(self.match(rule(32, 7, "%p<5")))
        self.assertTrue(self.match(rule(32, 7, "%p > 5 && %p < 8")))
        self.assertFalse(self.match(rule(32, 7, "%p >")), "a bad expression is no match")

    def test_regexp(self):
        """8: a shell pattern, case-blind."""
        self.assertTrue(self.match(rule(2, 8, "FAILURE*failed")))
        self.assertFalse(self.match(rule(2, 8, "failure")))

    def test_address_comparisons(self):
        """5: no From is the user; 6: the user is in no To/Cc/Bcc."""
        self.assertTrue(self.match(rule(-1, 5, "")))
        own = [("From", "Bob <bob@example.org>")]
        self.assertFalse(self.match(rule(-1, 5, ""), own))
        self.assertFalse(self.match(rule(-1, 6, "")))
        self.assertTrue(self.match(rule(-1, 6, ""), [("To", "all@example.org")]))

    def test_first_match_and_verdict(self):
        """Rules run in order; the verdict carries folder, action and forward."""
        rules = [rule(2, 1, "nothing"), rule(2, 1, "failure", "/NoDeliver", "3&ed@x.org")]
        verdict = V.first_match(rules, HEADERS, V.HEADERS, "bob@example.org")
        self.assertEqual((verdict.deliver, verdict.action, verdict.forward, verdict.bounce),
                         (False, 3, "&ed@x.org", True))
        inbox = V.first_match([rule(2, 1, "failure", "Inbox")], HEADERS, V.HEADERS, "b@e")
        self.assertEqual((inbox.deliver, inbox.maildir_folder), (True, None))
        self.assertIsNone(V.first_match([rule(2, 1, "zzz")], HEADERS, V.HEADERS, "b@e"))

    def test_split_bounce(self):
        """bounce_action is the number, then the forward for 2 and 3."""
        self.assertEqual(V.split_bounce("2|/usr/local/bin/myfilter"),
                         (2, "|/usr/local/bin/myfilter"))
        self.assertEqual(V.split_bounce("1"), (1, ""))
        self.assertEqual(V.split_bounce(""), (0, ""))

    def test_message_headers_include_mime_parts(self):
        """Headers of MIME parts are seen too, unfolded and lower-cased."""
        path = Path(self.mktemp())
        path.write_bytes(b"Subject: Hello\n World\nContent-Type: multipart/mixed; boundary=b\n\n"
                         b"--b\nContent-Type: text/plain\nX-QHPSI: Virus Found\n\nx\n--b--\n")
        headers = V.message_headers(path)
        self.assertIn(("Subject", "hello world"), headers)
        self.assertIn(("X-QHPSI", "virus found"), headers)


class DisplayTests(SynchronousTestCase):
    def test_show_line_layout(self):
        """vcfilter -s: upstream's columns; /NoDeliver shows as Void, a forward after No."""
        line = V.format_rule(VFilter("bob@example.org", 2, "myfilter", 2, 0, "failure notice",
                                     "/NoDeliver", "2|/usr/local/bin/myfilter", 0), V.HEADERS)
        self.assertEqual(line, "  2 bob@example.org               myfilter             "
                               "Subject         Equals                     failure notice  "
                               "Void            No|/usr/local/bin/myfilter\n")
        raw = V.format_rule_raw(VFilter("bob@example.org", 3, "spam filter", 33, 3,
                                        "Yes, spamicity=", "Spam", "0", 0))
        self.assertEqual(raw, "3 bob@example.org spam~filter 33 3 Yes,~spamicity= Spam Deliver\n")
