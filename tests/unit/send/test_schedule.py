"""qmail-send's retry schedule and queue lifetime."""

from __future__ import annotations

from twisted.trial import unittest

from indimail.queue.schedule import (TOO_LONG, dying_report, is_dying, lifetime_for,
                                     next_retry)


class RetryTests(unittest.SynchronousTestCase):

    def test_first_retries(self):
        """Right after birth: local after 100 s, remote after 400 s."""
        self.assertEqual(next_retry(1000, 1000, "local"), 1100)
        self.assertEqual(next_retry(1000, 1000, "remote"), 1400)

    def test_quadratic(self):
        """At birth+100 s local (n = 10) the next try is at birth + 20² ;
        remote at birth+400 s gives birth + 40²."""
        self.assertEqual(next_retry(0, 100, "local"), 400)
        self.assertEqual(next_retry(0, 400, "remote"), 1600)
        self.assertEqual(next_retry(0, 399, "remote"), (19 + 20) ** 2)

    def test_future_birth(self):
        """A birth time in the future counts as no time elapsed."""
        self.assertEqual(next_retry(500, 100, "local"), 600)

    def test_lifetime(self):
        """Past queuelifetime a message is dying; bouncelifetime applies to
        the null sender and never exceeds queuelifetime."""
        self.assertFalse(is_dying(0, 604800, 604800))
        self.assertTrue(is_dying(0, 604801, 604800))
        self.assertEqual(lifetime_for("", 604800, 3600), 3600)
        self.assertEqual(lifetime_for("", 100, 3600), 100)
        self.assertEqual(lifetime_for("a@b", 604800, 3600), 604800)
        self.assertEqual(lifetime_for("", 604800, None), 604800)

    def test_dying_report(self):
        """The deferral report gets qmail's give-up sentence on a new line."""
        self.assertEqual(dying_report("Connection refused. (#4.4.1)"),
                         "Connection refused. (#4.4.1)\n" + TOO_LONG)
        self.assertEqual(TOO_LONG, "I'm not going to try again; this message has been "
                                   "in the queue too long.\n")
