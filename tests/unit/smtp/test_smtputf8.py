"""SMTPUTF8 (RFC 6531): offered with ``SMTPUTF8``, UTF-8 addresses only when asked for."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.smtp.settings import load_settings
from indimail.smtp.utf8 import address_allowed, protocol_word

from .support import Harness, control_dir

REFUSED = "553 sorry, non-ASCII addresses not permitted for that sender/recipient (#5.6.7)"


def utf8_harness(testcase, **settings) -> Harness:
    h = Harness(testcase, rcpthosts="example.com\nbücher.example\n", smtputf8=True, **settings)
    h.send("EHLO client.example.net\r\n")
    h.output()
    return h


class Parts(SynchronousTestCase):

    def test_address_allowed(self):
        """ASCII always; non-ASCII only with SMTPUTF8 and only as valid UTF-8."""
        self.assertTrue(address_allowed("a@b.example", False))
        self.assertFalse(address_allowed("jörg@b.example", False))
        self.assertTrue(address_allowed("jörg@b.example", True))
        bad = b"j\xf6rg@b.example".decode("utf-8", "surrogateescape")
        self.assertFalse(address_allowed(bad, True))

    def test_protocol_word(self):
        """Upstream marks the Received line: ESMTPSA → UTF8ESMTPSA."""
        self.assertEqual(protocol_word("ESMTPSA", True), "UTF8ESMTPSA")
        self.assertEqual(protocol_word("ESMTP", False), "ESMTP")

    def test_setting(self):
        """The SMTPUTF8 variable turns the extension on (upstream's switch)."""
        control = ControlFiles(control_dir(self, None))
        self.assertFalse(load_settings(control, Environment(), pid=1).smtputf8)
        self.assertTrue(load_settings(control, Environment({"SMTPUTF8": ""}), pid=1).smtputf8)


class Protocol(SynchronousTestCase):

    def test_advertised(self):
        """EHLO offers SMTPUTF8 (before HELP) when on, not otherwise."""
        h = Harness(self, smtputf8=True)
        h.send("EHLO x\r\n")
        replies = h.replies()
        self.assertEqual(replies[-2:], ["250-SMTPUTF8", "250 HELP"])
        h = Harness(self)
        h.send("EHLO x\r\n")
        self.assertNotIn("250-SMTPUTF8", h.replies())

    def test_utf8_transaction(self):
        """MAIL ... SMTPUTF8: UTF-8 sender and recipients (local part and
        domain) are accepted and queued as UTF-8; Received says UTF8ESMTP."""
        h = utf8_harness(self)
        h.send("MAIL FROM:<jörg@absender.example> SMTPUTF8\r\n"
               "RCPT TO:<андрей@bücher.example>\r\nDATA\r\nSubject: ü\r\n\r\nx\r\n.\r\n".encode())
        self.assertEqual(h.codes(), [250, 250, 354, 250])
        [message] = h.sink.messages
        self.assertEqual(message.finished, ("jörg@absender.example", ["андрей@bücher.example"]))
        self.assertIn(b" with UTF8ESMTP; ", message.data)
        self.assertIn("Subject: ü\n".encode(), message.data)

    def test_refused_without_parameter(self):
        """Without the SMTPUTF8 parameter UTF-8 addresses get 553 5.6.7, at
        MAIL and at RCPT; the Received line says ESMTP."""
        h = utf8_harness(self)
        h.send("MAIL FROM:<jörg@absender.example>\r\n".encode())
        self.assertEqual(h.replies(), [REFUSED])
        h.send("MAIL FROM:<a@absender.example>\r\nRCPT TO:<b@bücher.example>\r\n"
               "RCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n".encode())
        self.assertEqual(h.replies()[:2], ["250 ok", REFUSED])
        self.assertEqual(h.sink.messages[0].finished, ("a@absender.example", ["b@example.com"]))
        self.assertIn(b" with ESMTP; ", h.sink.messages[0].data)

    def test_refused_when_not_offered(self):
        """With the extension off the parameter counts for nothing: UTF-8 is refused."""
        h = Harness(self)
        h.send("EHLO x\r\n")
        h.output()
        h.send("MAIL FROM:<jörg@absender.example> SMTPUTF8\r\n".encode())
        self.assertEqual(h.replies(), [REFUSED])

    def test_invalid_utf8_refused(self):
        """Bytes that are not UTF-8 are refused even in an SMTPUTF8 transaction."""
        h = utf8_harness(self)
        h.send(b"MAIL FROM:<j\xf6rg@absender.example> SMTPUTF8\r\n")
        self.assertEqual(h.replies(), [REFUSED])

    def test_enhanced_code(self):
        """With ENHANCEDSTATUSCODES the refusal is 553 5.6.7 (RFC 6531 §3.5)."""
        h = utf8_harness(self, enhanced=True)
        h.send("MAIL FROM:<jörg@absender.example>\r\n".encode())
        self.assertEqual(h.replies(), ["553 5.6.7 " + REFUSED[4:]])

    def test_transaction_flag_does_not_leak(self):
        """The next transaction without the parameter is an ASCII one again."""
        h = utf8_harness(self)
        h.send("MAIL FROM:<jörg@absender.example> SMTPUTF8\r\nRSET\r\n"
               "MAIL FROM:<a@absender.example>\r\nRCPT TO:<b@bücher.example>\r\n".encode())
        self.assertEqual(h.replies(), ["250 ok", "250 flushed", "250 ok", REFUSED])
