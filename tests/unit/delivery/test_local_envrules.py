"""rcpt.envrules and fromd.envrules at local delivery time: the delivery's
environment (programs, filters, QMAILLOCAL) changes per recipient/sender."""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from indimail.config.environment import Environment
from indimail.delivery.agent import delivery_environment
from indimail.delivery.local import LocalDelivery

from .support import FakeEnqueuer, control, make_home, queue_message, write_dotqmail


class EnvironmentTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.control = control(self.home)

    def test_rcpt_then_sender_rules(self):
        """fromd.envrules applies for the sender, then rcpt.envrules for the
        recipient (so the recipient's rules win); VAR= unsets."""
        (self.home.control / "fromd.envrules").write_text("*@vip.example:LEVEL=vip,KEEP=\n")
        (self.home.control / "rcpt.envrules").write_text(
            "*@yahoo.com:OUTGOINGIP=192.168.2.100,LEVEL=rcpt\n")
        base = Environment({"KEEP": "1"})
        env = delivery_environment(base, self.control, "a@vip.example", "b@yahoo.com")
        self.assertEqual(dict(env), {"LEVEL": "rcpt", "OUTGOINGIP": "192.168.2.100"})
        env = delivery_environment(base, self.control, "a@other", "b@other")
        self.assertEqual(dict(env), {"KEEP": "1"})

    def test_rcptrules_names_the_file(self):
        """RCPTRULES names another rules file."""
        (self.home.control / "myrules").write_text("*:FOO=bar\n")
        env = delivery_environment({"RCPTRULES": "myrules"}, self.control, "", "x@y")
        self.assertEqual(env["FOO"], "bar")


class LocalEnvrulesTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home)
        self.domain = self.home.domains / "example.com"
        self.agent = LocalDelivery(self.home, control(self.home), FakeEnqueuer(),
                                   reactor=reactor,
                                   env={"PATH": os.environ.get("PATH", "/bin"), "FOO": "base"})

    def deliver(self, recipient, sender="bob@example.org"):
        return self.agent.deliver(self.queue, self.msgid, sender, recipient, None)

    async def test_program_sees_recipient_rules(self):
        """A program delivery runs with the variables rcpt.envrules sets for
        its recipient only."""
        (self.home.control / "rcpt.envrules").write_text("example.com-alice@*:FOO=alice\n")
        write_dotqmail(self.home, ".qmail-default", '|echo "$FOO" >> "$EXT.out"\n')
        for who in ("alice", "bob"):
            result = await self.deliver(f"example.com-{who}@example.com")
            self.assertEqual(result.status, "success", result.report)
        self.assertEqual((self.domain / "alice.out").read_text(), "alice\n")
        self.assertEqual((self.domain / "bob.out").read_text(), "base\n")

    async def test_rules_can_set_filter(self):
        """rcpt.envrules may set FILTERARGS for one recipient (blackholed)."""
        (self.home.control / "rcpt.envrules").write_text(
            "example.com-spamtrap@example.com:FILTERARGS=exit 2\n")
        write_dotqmail(self.home, ".qmail-default", "./Maildir/\n")
        result = await self.deliver("example.com-spamtrap@example.com")
        self.assertEqual((result.status, result.report), ("success", "blackholed exit 2"))
        self.assertFalse((self.domain / "Maildir").exists())
        result = await self.deliver("example.com-other@example.com")
        self.assertEqual((result.status, result.report), ("success", "did 1+0+0"))
