"""qmail-send's log lines, word for word."""

from __future__ import annotations

from twisted.trial import unittest

from indimail.send import logline


class LogLineTests(unittest.SynchronousTestCase):

    def test_logsafe(self):
        """Newlines become ``/``; spaces, ``%`` and controls ``_``."""
        self.assertEqual(logline.logsafe("did 0+0+1\n"), "did_0+0+1/")
        self.assertEqual(logline.logsafe("a%b\tc\né"), "a_b_c/_")

    def test_lines(self):
        """Each line as qmail-send writes it; the queue label is appended."""
        self.assertEqual(logline.new_msg(5), "new msg 5")
        self.assertEqual(logline.info_msg(5, 300, "a@b", 42, 7),
                         "info msg 5: bytes 300 from <a@b> qp 42 uid 7")
        self.assertEqual(logline.starting(1, 5, "local", "x y@z"),
                         "starting delivery 1: msg 5 to local x_y@z")
        self.assertEqual(logline.delivery(1, "success", "did 0+0+1\n"),
                         "delivery 1: success: did_0+0+1/")
        self.assertEqual(logline.status({"local": 1, "remote": 0}, {"local": 10, "remote": 20}),
                         "status: local 1/10 remote 0/20")
        self.assertEqual(logline.end_msg(5, "queue2"), "end msg 5 queue2")
        self.assertEqual(logline.bounce_msg(5, 77), "bounce msg 5 qp 77")
        self.assertEqual(logline.stat_line("local", "", "a@b", 5, 300),
                         "local: <> a@b 5 300 bytes")
