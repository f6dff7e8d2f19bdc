"""The issue's acceptance, on a home made by ``indimail init``."""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.init import init_home
from indimail.delivery.local import LocalDelivery
from tests.unit.delivery.support import FakeEnqueuer, queue_message


class AcceptanceTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = init_home(os.path.join(self.base, "H"), domain="example.com", env={})
        self.queue, self.msgid = queue_message(self.home)
        self.agent = LocalDelivery(self.home, ControlFiles(self.home.control), FakeEnqueuer(),
                                   reactor=reactor, env={})

    async def test_alice_maildir(self):
        """``.qmail-alice`` with ``./alice/Maildir/`` delivers into alice/Maildir/new/."""
        dot = self.home.domains / "example.com" / ".qmail-alice"
        dot.write_text("./alice/Maildir/\n")
        os.chmod(dot, 0o600)
        result = await self.agent.deliver(self.queue, self.msgid, "bob@example.org",
                                          "example.com-alice@example.com")
        self.assertEqual(result.status, "success", result.report)
        new = self.home.domains / "example.com" / "alice" / "Maildir" / "new"
        [name] = os.listdir(new)
        self.assertTrue((new / name).read_bytes().startswith(
            b"Return-Path: <bob@example.org>\nDelivered-To: example.com-alice@example.com\n"))

    async def test_no_mailbox(self):
        """A recipient without a dot-qmail file fails with qmail-local's text."""
        result = await self.agent.deliver(self.queue, self.msgid, "bob@example.org",
                                          "example.com-nobody@example.com")
        self.assertEqual((result.status, result.report),
                         ("failure", "Sorry, no mailbox here by that name. (#5.1.1)"))
