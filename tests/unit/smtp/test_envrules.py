"""envrules in the SMTP session: from/rcpt/auth.envrules and domainqueue.

Sessions are built by one :class:`SMTPFactory` (as the service does) on
StringTransports with a Clock and a fake sink, so rules change one
session's environment while other sessions of the same process keep theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.smtp.envrules import RulesFiles
from indimail.smtp.service import SMTPFactory
from indimail.smtp.settings import load_settings
from indimail.smtp.testing import FakeSink

from .tlsauth_support import b64, tls_harness


def control(testcase, **files) -> ControlFiles:
    root = Path(testcase.mktemp())
    root.mkdir()
    (root / "me").write_text("mx.example.com\n")
    (root / "rcpthosts").write_text("example.com\nexample.org\n")
    for name, text in files.items():
        (root / name.replace("_", ".")).write_text(text)
    return ControlFiles(root)


class Client:
    """One session of *factory* on a StringTransport."""

    def __init__(self, factory, ip="192.0.2.9"):
        self.proto = factory.buildProtocol(IPv4Address("TCP", ip, 4000))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", ip, 4000),
                                         hostAddress=IPv4Address("TCP", "192.0.2.1", 25))
        self.proto.makeConnection(self.transport)
        self._read = 0
        self.replies()

    def send(self, text: str) -> None:
        self.proto.dataReceived(text.encode())

    def replies(self) -> list[str]:
        value = self.transport.value()
        new, self._read = value[self._read:], len(value)
        return [line for line in new.decode().split("\r\n") if line]

    def codes(self) -> list[int]:
        return [int(line[:3]) for line in self.replies() if line[3:4] == " "]


def make_factory(testcase, env=None, **files):
    ctl = control(testcase, **files)
    sink = FakeSink()
    factory = SMTPFactory(control=ctl, sink=sink, env=lambda: dict(env or {}), rules=None,
                          reactor=Clock(), pid=4711)
    return factory, sink


BIG = "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 30 + ".\r\n"   # ~2 KB


class FromRules(SynchronousTestCase):

    def test_ceo_lifts_databytes_for_that_sender_only(self):
        """``ceo@example.com:DATABYTES=`` in from.envrules: in two sessions of one
        factory (DATABYTES=1000), ceo's 2 KB message is queued, another sender's
        gets 552 — in the same process, at the same time."""
        factory, sink = make_factory(self, {"DATABYTES": "1000"},
                                     from_envrules="ceo@example.com:DATABYTES=\n")
        ceo, other = Client(factory), Client(factory, "192.0.2.10")
        for c, sender in ((ceo, "ceo@example.com"), (other, "joe@example.net")):
            c.send(f"EHLO x\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n")
            self.assertEqual(c.codes(), [250, 250, 250, 354])
        ceo.send(BIG)
        other.send(BIG)
        self.assertEqual(ceo.codes(), [250])
        self.assertEqual(other.codes(), [552])
        self.assertTrue(sink.messages[0].finished)
        self.assertNotIn("DATABYTES", sink.messages[0].env)
        self.assertEqual(sink.messages[1].env["DATABYTES"], "1000")

    def test_change_ends_with_the_transaction(self):
        """After ceo's transaction the next MAIL in the same session has the limit again."""
        factory, _ = make_factory(self, {"DATABYTES": "1000"},
                                  from_envrules="ceo@example.com:DATABYTES=\n")
        c = Client(factory)
        c.send("HELO x\r\nMAIL FROM:<ceo@example.com>\r\nRCPT TO:<a@example.com>\r\n"
               "DATA\r\n" + BIG)
        self.assertEqual(c.codes(), [250, 250, 250, 354, 250])
        c.send("MAIL FROM:<joe@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n" + BIG)
        self.assertEqual(c.codes(), [250, 250, 354, 552])
        c.send("MAIL FROM:<ceo@example.com>\r\nRSET\r\nMAIL FROM:<joe@example.net> SIZE=2000\r\n")
        self.assertEqual(c.codes(), [250, 250, 552])

    def test_refused_mail_keeps_the_earlier_transaction(self):
        """A second MAIL that is refused leaves ceo's transaction and its lifted
        limit in place (qmail keeps the earlier MAIL when a MAIL fails)."""
        factory, sink = make_factory(self, {"DATABYTES": "1000"},
                                     from_envrules="ceo@example.com:DATABYTES=\n")
        c = Client(factory)
        c.send("MAIL FROM:<ceo@example.com>\r\nRCPT TO:<a@example.com>\r\n"
               "MAIL FROM:<joe@example.net> SIZE=2000\r\nDATA\r\n" + BIG)
        self.assertEqual(c.codes(), [250, 250, 552, 354, 250])
        self.assertEqual(sink.messages[0].finished[0], "ceo@example.com")

    def test_size_declared_at_mail_uses_the_changed_limit(self):
        """MAIL SIZE= above DATABYTES is accepted for the sender whose rule lifts it."""
        factory, _ = make_factory(self, {"DATABYTES": "1000"},
                                  from_envrules="*@boss.example:DATABYTES=5000\n")
        c = Client(factory)
        c.send("MAIL FROM:<a@boss.example> SIZE=4000\r\nMAIL FROM:<a@boss.example> SIZE=6000\r\n")
        self.assertEqual(c.codes(), [250, 552])

    def test_fromrules_variable_names_the_file(self):
        """FROMRULES names another file (relative to the control directory)."""
        factory, sink = make_factory(self, {"FROMRULES": "other.rules"},
                                     other_rules="<>:BOUNCE=1\n",
                                     from_envrules="<>:WRONG=1\n")
        c = Client(factory)
        c.send("MAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n.\r\n")
        self.assertEqual(c.codes(), [250, 250, 354, 250])
        self.assertEqual(sink.messages[0].env.get("BOUNCE"), "1")
        self.assertNotIn("WRONG", sink.messages[0].env)

    def test_qregex(self):
        """With QREGEX the pattern is a case-insensitive regex searched in the sender."""
        factory, sink = make_factory(self, {"QREGEX": "1"},
                                     from_envrules="^ceo@:VIP=yes\n")
        c = Client(factory)
        c.send("MAIL FROM:<CEO@example.com>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n.\r\n")
        self.assertEqual(c.codes(), [250, 250, 354, 250])
        self.assertEqual(sink.messages[0].env["VIP"], "yes")

    def test_rules_file_edits_are_seen(self):
        """An edited from.envrules applies to the next MAIL without a restart."""
        factory, sink = make_factory(self, {"DATABYTES": "1000"})
        c = Client(factory)
        c.send("MAIL FROM:<x@example.net> SIZE=2000\r\n")
        self.assertEqual(c.codes(), [552])
        path = factory.control.path("from.envrules")
        path.write_text("x@example.net:DATABYTES=\n")
        os.utime(path, ns=(1, 1))   # a different stamp, whatever the clock's resolution
        c.send("MAIL FROM:<x@example.net> SIZE=2000\r\n")
        self.assertEqual(c.codes(), [250])


class RcptRulesAndDomainQueue(SynchronousTestCase):

    def test_rcpt_rules_set_a_variable_for_later_recipients(self):
        """A RELAYCLIENT set by rcpt.envrules holds for the rest of the transaction only."""
        factory, _ = make_factory(self, rcpt_envrules="*@partner.example:RELAYCLIENT=+x\n")
        c = Client(factory)
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@elsewhere.example>\r\n"
               "RCPT TO:<y@partner.example>\r\nRCPT TO:<z@elsewhere.example>\r\nRSET\r\n"
               "MAIL FROM:<a@example.net>\r\nRCPT TO:<z@elsewhere.example>\r\n")
        self.assertEqual(c.codes(), [250, 553, 250, 250, 250, 250, 553])

    def test_domainqueue_sets_queuedir(self):
        """domainqueue ``domain:QUEUEDIR=dir``: the sink's begin(env) carries the queue."""
        factory, sink = make_factory(
            self, domainqueue="example.org:QUEUEDIR=/var/indimail/queue/slow\n"
                              "*.example.com:QUEUE_BASE=/q,QUEUE_START=5,QUEUE_COUNT=2\n")
        c = Client(factory)
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n.\r\n"
               "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n.\r\n")
        self.assertEqual(c.codes(), [250, 250, 354, 250] * 2)
        self.assertEqual(sink.messages[0].env["QUEUEDIR"], "/var/indimail/queue/slow")
        self.assertNotIn("QUEUEDIR", sink.messages[1].env)   # not a sub-domain match

    def test_domainqueue_multiqueue_settings(self):
        """``domain:QUEUE_BASE=..,QUEUE_START=..,QUEUE_COUNT=..`` reaches the sink."""
        factory, sink = make_factory(
            self, domainqueue="example.org:QUEUE_BASE=/q,QUEUE_START=5,QUEUE_COUNT=2\n")
        c = Client(factory)
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n.\r\n")
        env = sink.messages[0].env
        self.assertEqual((env["QUEUE_BASE"], env["QUEUE_START"], env["QUEUE_COUNT"]),
                         ("/q", "5", "2"))

    def test_rejected_recipient_does_not_choose_the_queue(self):
        """domainqueue applies only to accepted recipients."""
        factory, sink = make_factory(self, domainqueue="elsewhere.example:QUEUEDIR=/x\n")
        c = Client(factory)
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@elsewhere.example>\r\n"
               "RCPT TO:<b@example.com>\r\nDATA\r\n.\r\n")
        self.assertEqual(c.codes(), [250, 553, 250, 354, 250])
        self.assertNotIn("QUEUEDIR", sink.messages[0].env)


class AuthRules(SynchronousTestCase):

    def test_auth_rules_match_user_or_null(self):
        """auth.envrules: lines matching the user, and (upstream) the empty address, apply."""
        files = RulesFiles(control(self, auth_envrules="ceo@example.com:DATABYTES=\n"
                                                       ":AUTHED=1\nother:NO=1\n"),
                           settings=lambda env: None)
        self.assertEqual(files.assignments("auth", {}, "ceo@example.com"),
                         [("DATABYTES", None), ("AUTHED", "1")])

    def test_auth_rules_change_the_connection(self):
        """After a successful AUTH, auth.envrules for the user change the session's
        environment and settings for the rest of the connection (RSET keeps them)."""
        h = tls_harness(self)
        ctl = control(self, auth_envrules="alice@example.com:DATABYTES=100,QUOTA=x\n")
        h.proto.rules = RulesFiles(ctl, settings=lambda env: load_settings(ctl, env, pid=1))
        h.send("EHLO x\r\nMAIL FROM:<a@example.net> SIZE=200\r\nRSET\r\n")
        self.assertEqual(h.codes(), [250, 250, 250])
        h.send(f"AUTH PLAIN {b64(chr(0) + 'alice@example.com' + chr(0) + 'secret')}\r\n")
        self.assertEqual(h.codes(), [235])
        h.send("MAIL FROM:<a@example.net> SIZE=200\r\nRSET\r\n"
               "MAIL FROM:<a@example.net> SIZE=99\r\n")
        self.assertEqual(h.codes(), [552, 250, 250])
        self.assertEqual(h.proto.session.env["QUOTA"], "x")

    def test_settings_rederived(self):
        """The rules' settings callable re-derives DATABYTES from the changed env."""
        ctl = control(self, databytes="1000\n")
        files = RulesFiles(ctl, settings=lambda env: load_settings(ctl, env, pid=1))
        self.assertEqual(files.settings({}).databytes, 1000)
        self.assertEqual(files.settings({"DATABYTES": "0"}).databytes, 0)
