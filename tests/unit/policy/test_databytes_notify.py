"""DATABYTES_NOTIFY: recipients hear of a message refused for its size."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.environment import Environment
from indimail.config.init import init_home
from indimail.plugins.api import PluginSetup
from indimail.plugins.context import HookContext
from indimail.policy.databytes_notify import DatabytesNotify, notification
from indimail.queue.envelope import Envelope
from indimail.smtp.session import Session, Transaction
from indimail.smtp.settings import SessionSettings
from indimail.smtp.testing import FakeSink

NOW = 1700000000.0   # 14 Nov 2023 22:13:20 UTC


def context(env=None, recipients=("b@example.com", "c@example.com"), size=123456):
    session = Session(env=Environment(env or {}), remote_ip="192.0.2.9", helo="client.example")
    txn = Transaction("a@example.net", recipients=list(recipients), size=size)
    clock = Clock()
    clock.advance(NOW)
    settings = SessionSettings(me="mx.example.com", greeting="mx.example.com",
                               local_host="mx.example.com", pid=4711)
    return HookContext(session, txn, settings, clock, Logger())


class NotificationTest(SynchronousTestCase):

    def test_upstream_header_block(self):
        """msg_notify()'s headers, byte for byte."""
        self.assertEqual(notification("a@example.net", 123456, NOW), (
            b"X-size-Notification: size=123456,14 Nov 2023 22:13:20 -0000\n"
            b"To: do-not-reply\nFrom: a@example.net\n"
            b"Subject: Notification Message size 123456 exceeds data limit\n"
            b"Date: 14 Nov 2023 22:13:20 -0000\n"))

    def test_queued_to_the_recipients_from_the_sender(self):
        """With DATABYTES_NOTIFY the note goes to every accepted recipient, from
        the same sender, after smtpd's Received line."""
        sink = FakeSink()
        plugin = DatabytesNotify(lambda: sink)
        self.assertIsNone(self.successResultOf(
            plugin.hook_oversize(context({"DATABYTES_NOTIFY": ""}))))
        [message] = sink.messages
        self.assertEqual(message.finished, ("a@example.net", ["b@example.com", "c@example.com"]))
        self.assertEqual((message.invoked, message.remote_ip), ("network", "192.0.2.9"))
        data = message.data
        self.assertTrue(data.startswith(b"Received: indimail-mta smtpd 4711 (HELO client."
                                        b"example) (192.0.2.9)\n"), data)
        self.assertIn(b"Subject: Notification Message size 123456 exceeds data limit\n", data)

    def test_nothing_without_variable_or_recipients(self):
        """No DATABYTES_NOTIFY, or no accepted recipient: nothing is queued."""
        sink = FakeSink()
        plugin = DatabytesNotify(lambda: sink)
        self.assertIsNone(plugin.hook_oversize(context()))
        self.assertIsNone(plugin.hook_oversize(context({"DATABYTES_NOTIFY": ""},
                                                       recipients=())))
        self.assertEqual(sink.messages, [])

    def test_queue_failure_is_only_logged(self):
        """A failing queue leaves the hook quiet (the client already has its 552)."""
        plugin = DatabytesNotify(lambda: FakeSink(auto_finish=OSError("disk full")))
        self.assertIsNone(self.successResultOf(
            plugin.hook_oversize(context({"DATABYTES_NOTIFY": ""}))))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class RealQueueTest(TestCase):

    async def test_notification_lands_in_the_home_queue(self):
        """Built from a PluginSetup with a home, the plugin queues into the home's queue."""
        home = init_home(Path(self.mktemp()).absolute(), env={}, hostname="mx.example.com")
        plugin = DatabytesNotify.from_setup(PluginSetup(control=None, home=home, env={},
                                                        reactor=reactor))
        self.addCleanup(lambda: plugin.sink.close())
        msgid = await plugin.notify(context({"DATABYTES_NOTIFY": ""}))
        self.assertTrue(msgid)
        queue = home.queue_base / "queue1"
        [todo] = list((queue / "todo").glob("*/*"))
        self.assertEqual(Envelope.from_todo(todo.read_bytes()).sender, "a@example.net")
        mess = (queue / "mess" / todo.parent.name / todo.name).read_bytes()
        self.assertIn(b"X-size-Notification: size=123456,", mess)


class NoQueueTest(SynchronousTestCase):

    def test_without_home_or_sink_nothing_is_queued(self):
        """Built without a home or a sink (a bare plugin setup), the hook does nothing."""
        plugin = DatabytesNotify.from_setup(PluginSetup(control=None))
        self.assertIsNone(self.successResultOf(
            plugin.hook_oversize(context({"DATABYTES_NOTIFY": ""}))))

    def test_sink_option_is_used(self):
        """setup.options["sink"] (the service's Enqueuer) is where the note goes."""
        sink = FakeSink()
        plugin = DatabytesNotify.from_setup(PluginSetup(control=None, options={"sink": sink}))
        self.successResultOf(plugin.hook_oversize(context({"DATABYTES_NOTIFY": ""})))
        self.assertEqual(len(sink.messages), 1)
