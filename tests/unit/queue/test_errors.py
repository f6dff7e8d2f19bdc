"""QueueError: exit codes, temporary/permanent, SMTP replies."""

from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.errors import QueueError, default_text, is_permanent


class QueueErrorTests(SynchronousTestCase):
    def test_permanent_range(self):
        """Exit codes 11..40 are permanent, everything else temporary."""
        self.assertTrue(is_permanent(11))
        self.assertTrue(is_permanent(40))
        self.assertFalse(is_permanent(41))
        self.assertFalse(is_permanent(53))
        self.assertFalse(QueueError(79).temporary is False)

    def test_upstream_texts(self):
        """Common codes carry qmail_close()'s texts."""
        self.assertEqual(QueueError(53).text, "qq write error or disk full (#4.3.0)")
        self.assertEqual(QueueError(11).text, "envelope address too long for qq (#5.1.3)")
        self.assertEqual(default_text(39), "qq permanent problem (#5.3.0)")
        self.assertEqual(default_text(99), "qq temporary problem (#4.3.0)")

    def test_smtp_reply_temporary(self):
        """A temporary error answers 451 with the enhanced code of its text."""
        self.assertEqual(QueueError(72).smtp_reply,
                         (451, "4.4.1", "connection to mail server timed out (#4.4.1)"))
        self.assertEqual(QueueError(53).smtp_reply[:2], (451, "4.3.0"))

    def test_smtp_reply_permanent(self):
        """A permanent error answers 554 with a 5.x.x code."""
        self.assertEqual(QueueError(11).smtp_reply[:2], (554, "5.1.3"))
        self.assertEqual(QueueError(31, "rejected").smtp_reply, (554, "5.3.0", "rejected"))

    def test_qmail_text(self):
        """qmail_text has qmail_close()'s Z/D prefix."""
        self.assertEqual(QueueError(54).qmail_text, "Zqq read error (#4.3.0)")
        self.assertEqual(QueueError(11).qmail_text[0], "D")
        self.assertEqual(QueueError(54).code, 54)
