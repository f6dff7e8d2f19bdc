"""The plugin hooks as the SMTP protocol runs them (StringTransport + Clock)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.plugins import helpers
from tests.unit.smtp.support import Harness

RECORDER = "tests.unit.plugins.helpers:Recorder"
MESSAGE = "Subject: hi\r\nX-Tag: one\r\n two\r\n\r\nbody\r\n.\r\n"


class HookTests(SynchronousTestCase):

    def setUp(self):
        del helpers.CALLS[:]

    def harness(self, **env):
        return Harness(self, env={"PLUGIN0": RECORDER, **env})

    def test_every_hook_runs_in_order(self):
        """connect, helo, mail, rcpt, data and queue hooks run at their commands;
        the queue hook sees the size and the unfolded header names."""
        h = self.harness()
        h.send("EHLO client.example\r\n")
        h.replies()
        h.transaction()
        h.send(MESSAGE)
        self.assertEqual(h.codes()[-1], 250)
        self.assertEqual(helpers.CALLS, ["connect", "helo", "mail", "rcpt", "data",
                                         "headers:Subject,X-Tag", "size:34", "queue"])
        self.assertEqual(h.sink.messages[0].finished[1], ["b@example.com"])

    def test_connect_deny_replaces_greeting_and_closes(self):
        """A refusing connect hook answers instead of the greeting and closes."""
        h = self.harness(RECORDER_CONNECT="denysoft")
        self.assertEqual(h.greeting, ["451 connect deferred by recorder"])
        self.assertTrue(h.closed)

    def test_helo_deny(self):
        """A refused HELO gets the plugin's reply and is not remembered."""
        h = self.harness(RECORDER_HELO="deny")
        h.send("HELO bad.example\r\n")
        self.assertEqual(h.replies(), ["554 helo refused by recorder"])
        self.assertIsNone(h.proto.session.helo)

    def test_mail_deny_keeps_no_transaction(self):
        """A MAIL refused by a plugin starts no transaction: RCPT needs MAIL first."""
        h = self.harness(RECORDER_MAIL="deny")
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.replies(), ["554 mail refused by recorder", "503 MAIL first (#5.5.1)"])

    def test_disconnect_closes_after_reply(self):
        """DISCONNECT sends the reply and drops the connection."""
        h = self.harness(RECORDER_MAIL="disconnect")
        h.send("MAIL FROM:<a@example.net>\r\nNOOP\r\n")
        self.assertEqual(h.replies(), ["421 mail closed by recorder"])
        self.assertTrue(h.closed)

    def test_mail_discard_answers_250_but_queues_nothing(self):
        """A blackholed sender sees 250 at every step; the message is aborted."""
        h = self.harness(RECORDER_MAIL="discard")
        h.transaction()
        h.send(MESSAGE)
        self.assertEqual(h.codes(), [250])
        message = h.sink.messages[0]
        self.assertTrue(message.aborted)
        self.assertIsNone(getattr(message, "finished", None))

    def test_rcpt_discard_drops_only_that_recipient(self):
        """A discarded recipient gets 250 but is not handed to the queue."""
        h = self.harness()
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n")
        h.proto.session.env = h.proto.session.env.set(RECORDER_RCPT="discard")
        h.send("RCPT TO:<gone@example.com>\r\nDATA\r\n")
        h.send(MESSAGE)
        self.assertEqual(h.codes(), [250, 250, 250, 354, 250])
        self.assertEqual(h.sink.messages[0].finished[1], ["b@example.com"])

    def test_only_discarded_recipients_still_take_data(self):
        """With every recipient discarded DATA is accepted and nothing queued."""
        h = self.harness(RECORDER_RCPT="discard")
        h.transaction()
        h.send(MESSAGE)
        self.assertEqual(h.codes(), [250])
        self.assertTrue(h.sink.messages[0].aborted)

    def test_rcpt_nobody_accepts_is_relay_refusal(self):
        """A recipient that no plugin accepts is refused as a relay attempt."""
        h = self.harness()
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@elsewhere.example>\r\n")
        self.assertEqual(h.codes(), [250, 553])
        self.assertEqual(h.proto.session.notes["rcpt_errors"], 1)

    def test_rcpt_accept_before_rcpthosts(self):
        """An earlier ACCEPT skips rcpthosts: the plugin let the relay through."""
        h = self.harness(RECORDER_RCPT="accept")
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@elsewhere.example>\r\n")
        self.assertEqual(h.codes(), [250, 250])
        self.assertEqual(h.proto.session.transaction.recipients, ["x@elsewhere.example"])

    def test_data_deny(self):
        """A refusing data hook answers DATA instead of 354; nothing is begun."""
        h = self.harness(RECORDER_DATA="deny")
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual(h.codes(), [250, 250, 554])
        self.assertEqual(h.sink.messages, [])

    def test_queue_deny_aborts_the_message(self):
        """A refusing queue hook answers the final dot; the message is aborted."""
        h = self.harness(RECORDER_QUEUE="deny")
        h.transaction()
        h.send(MESSAGE)
        self.assertEqual(h.replies(), ["554 queue refused by recorder"])
        self.assertTrue(h.sink.messages[0].aborted)

    def test_hook_timeout_is_denysoft(self):
        """A hook that never answers is DENYSOFT after PLUGIN_TIMEOUT seconds."""
        h = self.harness(RECORDER_MAIL="later", PLUGIN_TIMEOUT="5")
        h.send("MAIL FROM:<a@example.net>\r\n")
        self.assertEqual(h.replies(), [])
        h.clock.advance(5)
        self.assertEqual(h.codes(), [451])

    def test_hook_exception_is_451(self):
        """A hook that raises is logged and answered 451; the session goes on."""
        h = self.harness(RECORDER_MAIL="raise")
        h.send("MAIL FROM:<a@example.net>\r\nNOOP\r\n")
        self.assertEqual(h.codes(), [451, 250])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_pipelined_commands_wait_for_hooks(self):
        """Commands behind a pending hook wait their turn (PIPELINING order)."""
        h = self.harness(RECORDER_MAIL="later", PLUGIN_TIMEOUT="5")
        h.send("MAIL FROM:<a@example.net>\r\nNOOP\r\n")
        self.assertEqual(h.replies(), [])
        h.clock.advance(5)
        self.assertEqual(h.codes(), [451, 250])

    def test_example_plugin(self):
        """The documented example refuses NOREPLY local parts and counts them."""
        h = Harness(self, env={"PLUGIN0": "indimail.plugins.example:NoReply",
                               "NOREPLY": "noreply, no-reply"})
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<No-Reply@example.com>\r\n"
               "RCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.replies(), [
            "250 ok", "553 sorry, No-Reply@example.com does not accept mail (#5.7.1)", "250 ok"])
        self.assertEqual(h.proto.session.notes["noreply"], 1)


class OversizeHookTests(SynchronousTestCase):

    def test_databytes_notify_through_the_oversize_hook(self):
        """An oversize message is refused 552 and, with DATABYTES_NOTIFY, the
        oversize hook queues the size notification to the recipients."""
        from indimail.plugins.api import PluginSetup
        from indimail.smtp.service import build_plugin_chain
        env = {"DATABYTES_NOTIFY": ""}
        h = Harness(self, env=env, databytes=100)
        h.proto.plugins = build_plugin_chain(
            PluginSetup(control=h.control, env=env, options={"sink": h.sink}), h.clock)
        h.transaction()
        h.send("Subject: big\r\n\r\n" + "x" * 300 + "\r\n.\r\n")
        self.assertEqual(h.codes(), [552])
        finished = [m for m in h.sink.messages if getattr(m, "finished", None)]
        self.assertEqual(len(finished), 1)
        self.assertEqual(finished[0].finished[1], ["b@example.com"])
        self.assertIn(b"X-size-Notification: size=", finished[0].data)
