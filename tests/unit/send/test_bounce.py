"""QSBMF bounces: the bounce file records and the bounce message bytes."""

from __future__ import annotations

import calendar

from twisted.trial import unittest

from indimail.queue.bounce import (BounceConfig, bounce_envelope, bounce_record,
                                   bounce_sender, build_bounce, date822, quote_address,
                                   strip_vdom_prepend)

NOW = calendar.timegm((2026, 11, 21, 22, 35, 59))
CONFIG = BounceConfig(bouncehost="mx.example.net", doublebounceto="postmaster@mx.example.net")


class RecordTests(unittest.SynchronousTestCase):

    def test_record(self):
        """``<recipient>:\\n<report>\\n\\n``; a missing final newline is added."""
        self.assertEqual(bounce_record("a@b", "Sorry, no mailbox here by that name. (#5.1.1)"),
                         b"<a@b>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n")
        self.assertEqual(bounce_record("a@b", "x\n"), b"<a@b>:\nx\n\n")

    def test_blank_lines_become_slash(self):
        """A blank line inside the report is written as ``\\n/``."""
        self.assertEqual(bounce_record("a@b", "one\n\ntwo"), b"<a@b>:\none\n/two\n\n")
        self.assertEqual(bounce_record("a@b", "one\n\n\ntwo\n"), b"<a@b>:\none\n//two\n\n")

    def test_newline_in_address(self):
        """A newline in the address is written as ``_``."""
        self.assertEqual(bounce_record("a\nb@c", "x"), b"<a_b@c>:\nx\n\n")

    def test_strip_vdom_prepend(self):
        """The virtual-domain prefix todo processing added is removed again."""
        vd = {"example.com": "example.com", ".example.org": "org"}
        self.assertEqual(strip_vdom_prepend("example.com-alice@example.com", vd),
                         "alice@example.com")
        self.assertEqual(strip_vdom_prepend("org-x@a.example.org", vd), "x@a.example.org")
        self.assertEqual(strip_vdom_prepend("alice@localhost", vd), "alice@localhost")
        self.assertEqual(strip_vdom_prepend("other-a@example.com", vd), "other-a@example.com")


class MessageTests(unittest.SynchronousTestCase):

    def test_date(self):
        """qmail's date822fmt in UTC."""
        self.assertEqual(date822(NOW), "21 Nov 2026 22:35:59 -0000")

    def test_mime_bounce_exact(self):
        """The MIME bounce, byte for byte."""
        msg = b"Subject: hi\n\nbody\n"
        data = build_bounce(sender="s@far.test", msgid=123, birth=1700000000,
                            bounce_text=b"<a@b>:\nno mailbox\n\n", message=msg,
                            message_size=len(msg), config=CONFIG, now=NOW)
        boundary = "1700000000mx.example.net123"
        expected = (
            "Date: 21 Nov 2026 22:35:59 -0000\n"
            "From: MAILER-DAEMON@mx.example.net\n"
            "To: s@far.test\n"
            "MIME-Version: 1.0\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\n'
            "Subject: failure notice\n"
            "\n"
            f"--{boundary}\n"
            "\n"
            "Hi. This is the qmail-send program at mx.example.net.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n"
            "\n"
            "<a@b>:\nno mailbox\n\n"
            "--- Enclosed is a copy of the message.\n"
            "\n"
            f"--{boundary}\n"
            "Content-Type: message/rfc822\n"
            "\n"
            "Return-Path: <s@far.test>\n"
            "Subject: hi\n\nbody\n"
            f"\n--{boundary}--\n").encode()
        self.assertEqual(data, expected)

    def test_truncated(self):
        """Past bouncemaxbytes the copy is cut and marked stripped."""
        config = BounceConfig(bouncehost="h", bouncemaxbytes=10)
        data = build_bounce(sender="s@x", msgid=1, birth=5, bounce_text=b"", message=b"0123456789",
                            message_size=500, config=config, now=NOW)
        self.assertIn(b"Return-Path: <s@x>\n0123456789\n\n--- End of message stripped.\n"
                      b"\n--5h1--\n", data)
        short = build_bounce(sender="s@x", msgid=1, birth=5, bounce_text=b"", message=b"abc",
                             message_size=3, config=config, now=NOW)
        self.assertTrue(short.endswith(b"Return-Path: <s@x>\nabc\n--5h1--\n"))

    def test_double_bounce(self):
        """A bounce of a bounce goes to doublebounceto from ``#@[]`` with
        qmail's double-bounce text."""
        self.assertEqual(bounce_envelope("", CONFIG), ("#@[]", "postmaster@mx.example.net"))
        data = build_bounce(sender="", msgid=1, birth=5, bounce_text=b"<x@y>:\nbad\n\n",
                            message=b"m\n", message_size=2, config=CONFIG, now=NOW)
        self.assertIn(b"To: postmaster@mx.example.net\n", data)
        self.assertIn(b"Hi. This is the qmail-send program at mx.example.net.\n"
                      b"I tried to deliver a bounce message to this address, but the bounce "
                      b"bounced!\n\n<x@y>:", data)
        self.assertIn(b"--- Enclosed is the original bounce.\n", data)
        self.assertIn(b"Return-Path: <>\n", data)

    def test_discards(self):
        """``#@[]`` is never bounced; a double bounce is dropped when
        doublebounceto starts with ``@``."""
        self.assertIsNone(bounce_envelope("#@[]", CONFIG))
        self.assertIsNone(bounce_envelope("", BounceConfig(doublebounceto="@mx")))
        self.assertEqual(bounce_envelope("s@x", CONFIG), ("", "s@x"))

    def test_custom_texts(self):
        """bouncemessage/bouncesubject/bouncefrom replace qmail's defaults."""
        config = BounceConfig(bouncehost="h", bouncefrom="bounce daemon",
                              bouncesubject="Undeliverable", bouncemessage="Custom text.")
        data = build_bounce(sender="s@x", msgid=1, birth=5, bounce_text=b"R", message=b"",
                            message_size=0, config=config, now=NOW)
        self.assertIn(b'From: "bounce daemon"@h\n', data)
        self.assertIn(b"Subject: Undeliverable\n", data)
        self.assertIn(b"--5h1\n\nCustom text.\nR--- Enclosed", data)

    def test_quoting_and_verp_sender(self):
        """Local parts needing it are quoted; ``owner-@host-@[]`` bounces to
        ``owner-@host``."""
        self.assertEqual(quote_address("a b@x"), '"a b"@x')
        self.assertEqual(quote_address("a.b@x"), "a.b@x")
        self.assertEqual(bounce_sender("owner-@host-@[]"), "owner-@host")
