"""mailarchive: qmail-queue's rule-based archive recipients, as rules and
through the Enqueuer (the envelope written to the queue)."""

from twisted.internet import defer, reactor
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.queue.enqueue import Enqueuer
from indimail.queue.envelope import Envelope
from indimail.queue.mailarchive import (
    archive_recipients, expand, load_rules, parse_rules, with_archive)

from .helpers import make_home


def rules(*lines):
    return parse_rules(list(lines))


class RuleTests(SynchronousTestCase):

    def test_expand(self):
        """%u, %d and %e become the local part, domain and address; other
        % sequences stay."""
        self.assertEqual(expand("%u@arch%d", "joe@example.com"), "joe@archexample.com")
        self.assertEqual(expand("arch_%e", "joe@example.com"), "arch_joe@example.com")
        self.assertEqual(expand("100%x%", "joe@example.com"), "100%x%")
        self.assertEqual(expand("%u-%d", "nodomain"), "nodomain-")

    def test_recipient_rule_with_star(self):
        """The seed's ``T:*:%u@arch%d`` archives every recipient to its own
        arch<domain> mailbox; the sender does not match T rules."""
        found = archive_recipients(rules("T:*:%u@arch%d"), "s@sender.org",
                                   ["a@example.com", "b@example.net"])
        self.assertEqual(found, ["a@archexample.com", "b@archexample.net"])

    def test_sender_rule(self):
        """F rules match the sender only, as a case-insensitive regex."""
        found = archive_recipients(rules("F:^POSTMASTER@:arch_%e"),
                                   "postmaster@example.com", ["postmaster@other.org"])
        self.assertEqual(found, ["arch_postmaster@example.com"])

    def test_null_sender_is_angle_brackets(self):
        """The null sender is matched (and substituted) as ``<>``."""
        found = archive_recipients(rules("F:^<>$:bounces@archive.example"), "", ["x@y"])
        self.assertEqual(found, ["bounces@archive.example"])

    def test_empty_pattern_and_type(self):
        """An empty pattern matches everything; an empty type is a T rule."""
        found = archive_recipients(rules("::all@archive.example"), "s@x", ["r1@y", "r2@y"])
        self.assertEqual(found, ["all@archive.example"])

    def test_every_match_adds_once(self):
        """Every matching line adds its destination; repeats are dropped."""
        found = archive_recipients(
            rules("T:example\\.com$:one@archive", "T:^a@:two@archive", "F:.*:one@archive"),
            "s@example.com", ["a@example.com", "b@example.com"])
        self.assertEqual(found, ["one@archive", "two@archive"])

    def test_bad_lines_skipped(self):
        """Lines without a destination are ignored."""
        self.assertEqual(rules("T:x", "T:x:", "nothing"), [])

    def test_with_archive_file(self):
        """with_archive reads control/mailarchive, or the file MAILARCHIVE
        names; without one the recipients are unchanged."""
        home = make_home(self)
        self.assertEqual(with_archive(home.control, {}, "s@x", ["r@y"]), ["r@y"])
        (home.control / "mailarchive").write_text("T::arch@z\n")
        (home.control / "other").write_text("T::other@z\n")
        self.assertEqual(with_archive(home.control, {}, "s@x", ["r@y"]), ["r@y", "arch@z"])
        self.assertEqual(with_archive(home.control, {"MAILARCHIVE": "other"}, "s@x", ["r@y"]),
                         ["r@y", "other@z"])
        self.assertEqual(len(load_rules(home.control, {})), 1)


class EnqueueArchiveTests(TestCase):

    def setUp(self):
        self.home = make_home(self, count=1)
        self.pool = ThreadPool(minthreads=1, maxthreads=2, name="test-archive")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    def enqueuer(self, env=None):
        return Enqueuer(self.home, {"CONFSPLIT": "7", **(env or {})}, reactor=reactor,
                        threadpool=self.pool, fsync_func=lambda fd: None)

    @defer.inlineCallbacks
    def test_archive_recipients_in_envelope(self):
        """Archive recipients are written to the queued envelope after the
        message's own recipients (EXTRAQUEUE stays first)."""
        (self.home.control / "mailarchive").write_text(
            "T:*:%u@arch%d\nF:^boss@:legal@example.com\n")
        enq = self.enqueuer({"EXTRAQUEUE": "extra@example.com"})
        msgid = yield enq.enqueue("boss@corp.example", ["ann@example.com"], [b"x\n"])
        env = Envelope.from_todo(enq.queues()[0].todo(msgid).read_bytes())
        self.assertEqual(env.recipients, ["extra@example.com", "ann@example.com",
                                          "legal@example.com", "ann@archexample.com"])
