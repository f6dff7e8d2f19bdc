"""ENHANCEDSTATUSCODES (RFC 2034/3463): offered on request, then on every reply."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.plugins.api import ORDER_FIRST, deny, denysoft
from indimail.queue.errors import QueueError
from indimail.smtp.enhanced import code_of, enhance, wire
from indimail.smtp.reply import Reply
from indimail.smtp.settings import load_settings
from indimail.smtp.testing import FakeSink

from .support import START, Harness, control_dir

ON = dict(enhanced=True)


class Replier:
    """A plugin whose mail hook refuses the way the sender's local part says."""

    name = "replier"
    order = ORDER_FIRST

    def __init__(self, setup):
        pass

    def hook_mail(self, ctx, sender):
        local = sender.split("@")[0]
        if local == "plain":
            return deny("go away")
        if local == "coded":
            return denysoft("try again later (#4.7.0)")
        if local == "wrongclass":
            return denysoft("greylisted (#5.7.1)")
        if local == "multi":
            return deny("first line", 550, "second line (#5.7.1)")
        return None


PLUGIN = {"PLUGIN0": f"{__name__}.Replier"}


class Function(SynchronousTestCase):

    def test_code_from_text(self):
        """The code in an upstream text, "(#x.y.z)" or "#x.y.z", is used."""
        self.assertEqual(code_of(Reply.of(503, "MAIL first (#5.5.1)")), "5.5.1")
        self.assertEqual(code_of(Reply.of(553, "relayed thru this MTA without "
                                               "authentication #5.7.1")), "5.7.1")

    def test_class_default(self):
        """Without a code in the text the reply class's X.0.0 is used."""
        self.assertEqual(code_of(Reply.of(250, "ok")), "2.0.0")
        self.assertEqual(code_of(Reply.of(451, "later")), "4.0.0")
        self.assertEqual(code_of(Reply.of(554, "no")), "5.0.0")

    def test_wrong_class_in_text(self):
        """A text code of another class keeps subject and detail under the reply's class."""
        self.assertEqual(code_of(Reply.of(451, "greylisted (#5.7.1)")), "4.7.1")

    def test_intermediate_replies_have_none(self):
        """3xx replies (354, 334) take no enhanced code."""
        self.assertIsNone(code_of(Reply.of(354, "go ahead")))
        self.assertEqual(enhance(Reply.of(334, "")).lines, ("",))

    def test_every_line_and_idempotent(self):
        """Every line of a multi-line reply is prefixed, once."""
        r = enhance(Reply.of(550, "one", "two (#5.7.1)"))
        self.assertEqual(r.to_bytes(), b"550-5.7.1 one\r\n550 5.7.1 two (#5.7.1)\r\n")
        self.assertEqual(enhance(r), r)

    def test_wire_form_with_and_without_codes(self):
        """``wire`` gives the bytes sent: enhanced once codes were offered,
        plain otherwise, whichever was asked first for the same reply."""
        r = Reply.of(550, "one", "two (#5.7.1)")
        self.assertEqual(wire(r, False), b"550-one\r\n550 two (#5.7.1)\r\n")
        self.assertEqual(wire(r, True), b"550-5.7.1 one\r\n550 5.7.1 two (#5.7.1)\r\n")
        self.assertEqual(wire(Reply.of(550, "one", "two (#5.7.1)"), False),
                         b"550-one\r\n550 two (#5.7.1)\r\n")
        self.assertEqual(wire(Reply.of(250, "ok"), True), b"250 2.0.0 ok\r\n")

    def test_version_numbers_are_not_codes(self):
        """A dotted number that is not "#x.y.z" (a version) is not taken for a code."""
        self.assertEqual(code_of(Reply.of(214, "IndiMail SMTP Version 2.1.0")), "2.0.0")


class Settings(SynchronousTestCase):

    def test_variable_turns_it_on(self):
        """ENHANCEDSTATUSCODES in the environment turns the extension on; off by default."""
        control = ControlFiles(control_dir(self, None))
        self.assertFalse(load_settings(control, Environment(), pid=1).enhanced)
        self.assertTrue(load_settings(control, Environment({"ENHANCEDSTATUSCODES": "1"}),
                                      pid=1).enhanced)


class Protocol(SynchronousTestCase):

    def test_not_offered_by_default(self):
        """Without the switch EHLO does not offer it and replies are upstream's, verbatim."""
        h = Harness(self)
        h.send("EHLO x\r\n")
        self.assertNotIn("250-ENHANCEDSTATUSCODES", h.replies())
        h.send("RCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.replies(), ["503 MAIL first (#5.5.1)"])

    def test_offered_in_ehlo(self):
        """EHLO lists ENHANCEDSTATUSCODES; the EHLO reply itself carries no code."""
        h = Harness(self, **ON)
        h.send("EHLO client.example.net\r\n")
        replies = h.replies()
        self.assertIn("250-ENHANCEDSTATUSCODES", replies)
        self.assertEqual(replies[0], "250-mx.example.com")

    def test_transaction_replies_after_ehlo(self):
        """After EHLO: MAIL 2.1.0, RCPT 2.1.5, 354 bare, queued 2.0.0, relay refusal
        5.7.1 with upstream's text kept word for word."""
        h = Harness(self, **ON)
        h.send("EHLO x\r\n")
        h.output()
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
               "RCPT TO:<c@elsewhere.example>\r\nDATA\r\n")
        self.assertEqual(h.replies(), [
            "250 2.1.0 ok", "250 2.1.5 ok",
            "553 5.7.1 sorry, that domain isn't allowed to be relayed thru this MTA "
            "without authentication #5.7.1",
            "354 go ahead"])
        h.send("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        self.assertEqual(h.replies(), [f"250 2.0.0 ok {int(START)} qp 4242",
                                       "221 2.0.0 mx.example.com closing connection"])

    def test_errors_after_ehlo(self):
        """Sequence, syntax and unknown-command errors carry their text's code."""
        h = Harness(self, **ON)
        h.send("EHLO x\r\nRCPT TO:<b@example.com>\r\nMAIL FROM:\r\nFOO\r\n")
        self.assertEqual(h.replies()[-3:], ["503 5.5.1 MAIL first (#5.5.1)",
                                            "555 5.1.3 syntax error in address (#5.1.3)",
                                            "502 5.5.2 command FOO not recognized (#5.5.2)"])

    def test_no_codes_after_helo(self):
        """A client that said HELO was not offered the extension: no codes."""
        h = Harness(self, **ON)
        h.send("HELO x\r\nRCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.replies(), ["250 mx.example.com", "503 MAIL first (#5.5.1)"])

    def test_plugin_replies(self):
        """Plugin refusals get a code: the class default, the one in their
        text, or the text's under the reply's class; every line of a multi-line one."""
        h = Harness(self, env=PLUGIN, **ON)
        h.send("EHLO x\r\n")
        h.output()
        for sender in ("plain", "coded", "wrongclass", "multi"):
            h.send(f"MAIL FROM:<{sender}@example.net>\r\n")
        self.assertEqual(h.replies(), [
            "550 5.0.0 go away",
            "451 4.7.0 try again later (#4.7.0)",
            "451 4.7.1 greylisted (#5.7.1)",
            "550-5.7.1 first line",
            "550 5.7.1 second line (#5.7.1)"])

    def test_queue_error_code(self):
        """A queue failure answers with the QueueError's own enhanced code, even
        when its text (a custom qmail-queue message) carries none."""
        h = Harness(self, sink=FakeSink(auto_finish=QueueError(88, "virus found")), **ON)
        h.send("EHLO x\r\n")
        h.output()
        h.transaction()
        h.send(".\r\n")
        self.assertEqual(h.replies(), ["451 4.3.0 virus found"])
