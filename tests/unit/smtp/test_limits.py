"""Session limits: MAXRECIPIENTS, TARPITCOUNT/TARPITDELAY, GREETDELAY,
MAXPERIP and MAXDAEMONS, on StringTransports with an injected Clock."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.config.tcprules import TcpRuleResult
from indimail.smtp.service import SMTPFactory
from indimail.smtp.settings import load_settings
from indimail.smtp.testing import FakeSink

from .support import Harness

EARLY = ("554 SMTP protocol violation. Polite people say hello after the server "
         "greets them (#5.7.1)")


class MaxRecipients(SynchronousTestCase):

    def test_over_the_limit(self):
        """MAXRECIPIENTS=2: the third RCPT gets upstream's 557; the transaction goes on."""
        h = Harness(self, maxrcpt=2)
        h.send("MAIL FROM:<a@example.net>\r\n" + "RCPT TO:<b@example.com>\r\n" * 3
               + "DATA\r\n.\r\n")
        replies = h.replies()
        self.assertEqual(replies[3], "557 sorry, too many recipients (#5.7.1)")
        self.assertEqual([r[:3] for r in replies], ["250", "250", "250", "557", "354", "250"])
        self.assertEqual(len(h.sink.messages[0].finished[1]), 2)

    def test_refused_recipients_do_not_count(self):
        """Relay refusals come first (upstream order) and do not use up the limit."""
        h = Harness(self, maxrcpt=1)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@elsewhere.example>\r\n"
               "RCPT TO:<b@example.com>\r\nRCPT TO:<x@elsewhere.example>\r\n")
        self.assertEqual(h.codes(), [250, 553, 250, 553])

    def test_counts_per_transaction(self):
        """The count starts again with the next MAIL."""
        h = Harness(self, maxrcpt=1)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nRSET\r\n"
               "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
               "RCPT TO:<c@example.com>\r\n")
        self.assertEqual(h.codes(), [250, 250, 250, 250, 250, 557])


class Tarpit(SynchronousTestCase):

    def test_replies_delayed_from_the_nth_recipient(self):
        """TARPITCOUNT=2, TARPITDELAY=5: the 2nd and later RCPT replies come 5 s
        later on the clock; pipelined commands behind them wait their turn."""
        h = Harness(self, tarpitcount=2, tarpitdelay=5)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
               "RCPT TO:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nNOOP\r\n")
        self.assertEqual(h.codes(), [250, 250])
        h.clock.advance(4.9)
        self.assertEqual(h.codes(), [])
        h.clock.advance(0.1)
        self.assertEqual(h.codes(), [250])
        h.clock.advance(5)
        self.assertEqual(h.codes(), [250, 250])

    def test_refused_recipients_are_not_tarpitted(self):
        """As upstream, the tarpit delays accepted recipients only; a refused RCPT
        is answered at once and does not count."""
        h = Harness(self, tarpitcount=2, tarpitdelay=5)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
               "RCPT TO:<x@elsewhere.example>\r\nRCPT TO:<c@example.com>\r\n")
        self.assertEqual(h.codes(), [250, 250, 553])
        h.clock.advance(5)
        self.assertEqual(h.codes(), [250])

    def test_not_a_timeout(self):
        """A tarpit longer than the idle timeout does not time the client out."""
        h = Harness(self, tarpitcount=1, tarpitdelay=50, timeout=10)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n")
        h.clock.advance(20)
        h.clock.advance(30)
        self.assertEqual(h.codes(), [250, 250])
        self.assertFalse(h.closed)

    def test_connection_lost_while_tarpitted(self):
        """A client gone during the delay gets nothing written and no error."""
        h = Harness(self, tarpitcount=1, tarpitdelay=5)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n")
        h.codes()
        h.proto.connectionLost(None)
        h.clock.advance(5)
        self.assertEqual(h.output(), b"")


class GreetDelay(SynchronousTestCase):

    def test_positive_delays_the_greeting(self):
        """GREETDELAY=3: the banner comes 3 s after connect; commands sent
        meanwhile are answered after it (upstream sleeps, then reads)."""
        h = Harness(self, greetdelay=3)
        self.assertEqual(h.greeting, [])
        h.send("NOOP\r\n")
        h.clock.advance(2.9)
        self.assertEqual(h.output(), b"")
        h.clock.advance(0.1)
        replies = h.replies()
        self.assertTrue(replies[0].startswith("220 mx.example.com"))
        self.assertEqual(replies[1:], ["250 ok"])

    def test_reading_pauses_while_waiting(self):
        """A client flooding during a positive GREETDELAY is not read further
        (the buffer stays bounded) until the greeting."""
        h = Harness(self, greetdelay=3)
        h.send("NOOP\r\n" * 20000)
        self.assertEqual(h.transport.producerState, "paused")
        h.clock.advance(3)
        self.assertEqual(h.transport.producerState, "producing")
        self.assertEqual(h.codes().count(250), 20000)

    def test_negative_rejects_early_talkers(self):
        """GREETDELAY=-3: a client talking before the greeting gets upstream's 554 and
        is disconnected; no greeting follows."""
        h = Harness(self, greetdelay=-3)
        h.clock.advance(1)
        h.send("EHLO spammer\r\n")
        self.assertEqual(h.replies(), [EARLY])
        self.assertTrue(h.closed)
        h.clock.advance(10)
        self.assertEqual(h.output(), b"")

    def test_negative_patient_client(self):
        """GREETDELAY=-3: a client that waits is greeted after 3 s and served."""
        h = Harness(self, greetdelay=-3)
        h.clock.advance(3)
        self.assertTrue(h.replies()[0].startswith("220 "))
        h.send("NOOP\r\n")
        self.assertEqual(h.replies(), ["250 ok"])

    def test_no_idle_timeout_before_greeting(self):
        """The idle timeout starts with the greeting, not at connect."""
        h = Harness(self, greetdelay=5, timeout=3)
        h.clock.advance(5)
        h.clock.advance(2.9)
        self.assertFalse(h.closed)
        h.clock.advance(0.1)
        self.assertTrue(h.closed)


class Settings(SynchronousTestCase):

    def control(self, **files) -> ControlFiles:
        root = Path(self.mktemp())
        root.mkdir()
        for name, text in files.items():
            (root / name).write_text(text)
        return ControlFiles(root)

    def test_variables_win_over_control_files(self):
        """MAXRECIPIENTS/TARPITCOUNT/TARPITDELAY/GREETDELAY override their control files."""
        ctl = self.control(maxrecipients="10\n", tarpitcount="3\n", tarpitdelay="2\n",
                           greetdelay="4\n")
        s = load_settings(ctl, {}, pid=1)
        self.assertEqual((s.maxrcpt, s.tarpitcount, s.tarpitdelay, s.greetdelay), (10, 3, 2, 4))
        s = load_settings(ctl, {"MAXRECIPIENTS": "5", "TARPITCOUNT": "0", "TARPITDELAY": "1",
                                "GREETDELAY": "-7"}, pid=1)
        self.assertEqual((s.maxrcpt, s.tarpitcount, s.tarpitdelay, s.greetdelay), (5, 0, 1, -7))

    def test_defaults(self):
        """Nothing configured: no recipient limit, no tarpit, no greet delay."""
        s = load_settings(self.control(), {}, pid=1)
        self.assertEqual((s.maxrcpt, s.tarpitcount, s.tarpitdelay, s.greetdelay), (0, 0, 5, 0))


class FakeRules:

    def __init__(self, table):
        self.table = table

    def match(self, ip):
        return self.table.get(ip, TcpRuleResult(True, [], None))


class ConnectionLimits(SynchronousTestCase):

    def factory(self, env, rules=None):
        root = Path(self.mktemp())
        root.mkdir()
        (root / "me").write_text("mx.example.com\n")
        return SMTPFactory(control=ControlFiles(root), sink=FakeSink(), env=lambda: env,
                           rules=rules, reactor=Clock(), pid=1)

    def connect(self, factory, ip):
        addr = IPv4Address("TCP", ip, 4000)
        proto = factory.buildProtocol(addr)
        if proto is not None:
            proto.makeConnection(StringTransport(peerAddress=addr,
                                                 hostAddress=IPv4Address("TCP", "192.0.2.1", 25)))
        return proto

    def test_maxperip(self):
        """MAXPERIP=2: a third session from one IP is refused (no protocol, so no
        byte is sent), others are not; a slot frees when a session ends."""
        f = self.factory({"MAXPERIP": "2"})
        a = self.connect(f, "192.0.2.9")
        self.connect(f, "192.0.2.9")
        self.assertIsNone(self.connect(f, "192.0.2.9"))
        self.assertIsNotNone(self.connect(f, "192.0.2.10"))
        a.connectionLost(None)
        a.connectionLost(None)   # counted once
        self.assertIsNotNone(self.connect(f, "192.0.2.9"))
        self.assertIsNone(self.connect(f, "192.0.2.9"))
        self.assertEqual(f.per_ip, {"192.0.2.9": 2, "192.0.2.10": 1})

    def test_maxperip_from_tcprules(self):
        """A tcp.smtp rule's MAXPERIP applies to the IPs it matches."""
        rules = FakeRules({"192.0.2.9": TcpRuleResult(True, [("MAXPERIP", "1")], None)})
        f = self.factory({}, rules)
        self.assertIsNotNone(self.connect(f, "192.0.2.9"))
        self.assertIsNone(self.connect(f, "192.0.2.9"))
        self.assertIsNotNone(self.connect(f, "192.0.2.10"))
        self.assertIsNotNone(self.connect(f, "192.0.2.10"))

    def test_maxdaemons(self):
        """MAXDAEMONS=2: a third concurrent session from anywhere is refused until one ends."""
        f = self.factory({"MAXDAEMONS": "2"})
        a = self.connect(f, "192.0.2.1")
        self.connect(f, "192.0.2.2")
        self.assertIsNone(self.connect(f, "192.0.2.3"))
        a.transport.loseConnection()
        a.connectionLost(None)
        self.assertIsNotNone(self.connect(f, "192.0.2.3"))
        self.assertEqual(f.active, 2)

    def test_unlimited_by_default(self):
        """Without MAXPERIP/MAXDAEMONS every connection is served."""
        f = self.factory({})
        for _ in range(50):
            self.assertIsNotNone(self.connect(f, "192.0.2.9"))


class MultiLineGreeting(SynchronousTestCase):
    """control/smtpgreeting with several lines, as upstream's ``smtp_greet()``."""

    def test_settings_read_every_line(self):
        """load_settings keeps every line; the first is the greeting."""
        root = Path(self.mktemp())
        root.mkdir()
        (root / "smtpgreeting").write_text("mx.example.com\nNo UCE here\n")
        s = load_settings(ControlFiles(root), {}, pid=1)
        self.assertEqual((s.greeting, s.greeting_lines),
                         ("mx.example.com", ("mx.example.com", "No UCE here")))

    def test_replies(self):
        """220 and HELO's 250 and QUIT's 221 use every line (the banner text on
        the first, ``[ip]``/``closing connection`` on the last); EHLO only the first."""
        h = Harness(self, greeting="mx.example.com",
                    greeting_lines=("mx.example.com", "No UCE here"))
        self.assertEqual(len(h.greeting), 2)
        self.assertRegex(h.greeting[0], r"^220-mx\.example\.com \(NO UCE\) ESMTP IndiMail ")
        self.assertEqual(h.greeting[1], "220 No UCE here")
        h.send("HELO\r\nEHLO x\r\nQUIT\r\n")
        replies = h.replies()
        self.assertEqual(replies[:3], ["250-mx.example.com", "250 No UCE here [192.0.2.7]",
                                       "250-mx.example.com"])
        self.assertEqual(replies[-2:], ["221-mx.example.com",
                                        "221 No UCE here closing connection"])
