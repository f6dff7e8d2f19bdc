"""vfilter comparisons 5 (sender not in the address book) and 6 (my id not
in To, Cc, Bcc): the address book file, alias domains, global rules."""

from pathlib import Path

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.vdomain import vfilter as V
from indimail.vdomain.records import VFilter

BOB = "bob@example.org"


def rule(comparison, emailid=BOB):
    return VFilter(emailid, comparison - 5, "f", -1, comparison, "", "Unknown", "0", 0)


def match(comparison, headers, book=frozenset(), real_domain=lambda d: d, emailid=BOB):
    return V.rule_matches(rule(comparison, emailid), headers, V.HEADERS, BOB, real_domain,
                          book)


class AddressBookFileTests(SynchronousTestCase):
    def test_every_address_of_the_file_counts(self):
        """Bare addresses, ``Name <address>``, vCard EMAIL lines; comments skipped."""
        maildir = Path(self.mktemp())
        maildir.mkdir()
        (maildir / "addressbook").write_text(
            "# friends\nCarol@Remote.test\nDave Smith <dave@remote.test>\n"
            "EMAIL;TYPE=INTERNET:erin@remote.test\n# eve@remote.test\n")
        self.assertEqual(V.read_address_book(maildir),
                         {"carol@remote.test", "dave@remote.test", "erin@remote.test"})

    def test_no_file_is_an_empty_book(self):
        """Without the file nobody is known (upstream's getAddressBook())."""
        self.assertEqual(V.read_address_book(Path(self.mktemp())), frozenset())


class SenderNotInAddressBookTests(SynchronousTestCase):
    def test_sender_in_book_or_the_user_is_no_match(self):
        """5 matches a stranger; not a sender in the book (From or
        Return-Path), nor the user writing to himself."""
        book = frozenset({"carol@remote.test"})
        self.assertTrue(match(5, [("From", "eve <eve@remote.test>")], book))
        self.assertFalse(match(5, [("From", "carol <carol@remote.test>")], book))
        self.assertFalse(match(5, [("Return-Path", "<carol@remote.test>"),
                                   ("From", "x@y.z")], book))
        self.assertFalse(match(5, [("From", "bob@example.org")], book))
        self.assertTrue(match(5, [("To", "carol@remote.test")], book),
                        "only From and Return-Path name the sender")

    def test_my_id_not_in_recipients_maps_alias_domains(self):
        """6 matches when no To/Cc/Bcc address is the user's, an alias
        domain's address counting as the real one."""
        alias = {"alias.org": "example.org"}.get
        self.assertTrue(match(6, [("To", "all@example.org")]))
        self.assertFalse(match(6, [("Cc", "BOB@example.org")]))
        self.assertFalse(match(6, [("To", "bob@alias.org")],
                               real_domain=lambda d: alias(d) or d))
        self.assertTrue(match(6, [("To", "bob@alias.org")]))

    def test_global_rules_never_use_them(self):
        """prefilt/postfilt rules with 5 or 6 are skipped, as upstream."""
        headers = [("From", "eve@remote.test"), ("To", "all@example.org")]
        for comparison in (5, 6):
            self.assertFalse(match(comparison, headers, emailid="prefilt@example.org"))
            self.assertFalse(match(comparison, headers, emailid="postfilt@example.org"))

    def test_first_match_uses_the_book(self):
        """first_match hands the book to the rules."""
        headers = [("From", "carol@remote.test")]
        self.assertIsNone(V.first_match([rule(5)], headers, V.HEADERS, BOB,
                                        address_book=frozenset({"carol@remote.test"})))
        self.assertEqual(V.first_match([rule(5)], headers, V.HEADERS, BOB).folder, "Unknown")


class AddressContextTests(TestCase):
    @defer.inlineCallbacks
    def test_lookups_only_for_the_comparisons_used(self):
        """The book is read only for a user rule with 5, domains resolved
        only for 6; an unknown domain stays itself."""
        maildir = Path(self.mktemp())
        maildir.mkdir()
        (maildir / "addressbook").write_text("carol@remote.test\n")
        asked = []

        def thread(fn, *args):
            return defer.succeed(fn(*args))

        async def real_domain(domain):
            asked.append(domain)
            return {"alias.org": "example.org"}.get(domain)
        headers = [("To", "bob@alias.org, x@nowhere.test"), ("From", "carol@remote.test")]
        mapped, book = yield defer.ensureDeferred(
            V.address_context([rule(5), rule(6)], headers, maildir, thread, real_domain))
        self.assertEqual(book, {"carol@remote.test"})
        self.assertEqual((mapped("alias.org"), mapped("nowhere.test")),
                         ("example.org", "nowhere.test"))
        asked.clear()
        _mapped, book = yield defer.ensureDeferred(
            V.address_context([rule(5, "prefilt@example.org")], headers, maildir, thread,
                              real_domain))
        self.assertEqual((book, asked), (frozenset(), []))

    @defer.inlineCallbacks
    def test_sender_domains_are_mapped_for_comparison_5(self):
        """The user writing from an alias domain is himself for comparison 5."""
        maildir = Path(self.mktemp())
        maildir.mkdir()

        async def real_domain(domain):
            return {"alias.org": "example.org"}.get(domain)
        headers = [("From", "bob@alias.org"), ("To", "x@nowhere.test")]
        mapped, _book = yield defer.ensureDeferred(
            V.address_context([rule(5)], headers, maildir,
                              lambda fn, *a: defer.succeed(fn(*a)), real_domain))
        self.assertEqual(mapped("alias.org"), "example.org")
        self.assertIsNone(V.first_match([rule(5)], headers, V.HEADERS, BOB, mapped))
