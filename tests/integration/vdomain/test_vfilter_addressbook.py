"""vfilter comparisons 5 and 6 end to end on SQLite and MariaDB: vcfilter
stores them (no header, no keyword), deliveries through vfilter apply them
with the user's address book and the store's alias domains."""

import os
import sys
from pathlib import Path

from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.delivery.local import LocalDelivery
from indimail.delivery.result import SUCCESS
from indimail.vdomain.admin import Admin
from indimail.vdomain.modify import add_alias_domain
from indimail.vdomain.records import VFilter
from tests.unit.delivery.support import FakeEnqueuer, queue_message

from .vhome import MysqlHome, StoreHome


def mail(sender, to="bob@example.org"):
    return f"From: {sender}\nTo: {to}\nSubject: hi\n\nhello\n".encode()


class AddressBookMixin:
    maxDiff = None

    @defer.inlineCallbacks
    def setUp(self):
        yield self.make_home("imvfab-")
        self.admin = Admin(self.home, self.store, vdelivermail="/usr/bin/vdelivermail")
        yield self.admin.add_domain("example.org")
        bob = yield self.admin.add_user("bob@example.org", "pw")
        self.maildir = Path(bob.pw_dir) / "Maildir"
        (self.home.domains / "example.org" / ".qmail-default").write_text(
            "| /usr/bin/vfilter '' bounce-no-mailbox\n")
        self.agent = LocalDelivery(self.home, ControlFiles(self.home.control), FakeEnqueuer(),
                                   reactor=reactor, store=self.store,
                                   env=Environment({"PATH": os.environ.get("PATH", "")}))
        self.msgid = 8000

    def vcfilter(self, *args):
        return utils.getProcessOutputAndValue(
            sys.executable, ("-m", "indimail.cli.vcfilter") + args, env=self.env)

    async def deliver(self, message, sender="carol@remote.test"):
        self.msgid += 1
        queue, msgid = queue_message(self.home, message, self.msgid)
        result = await self.agent.deliver(queue, msgid, sender, "example.org-bob@example.org")
        self.assertEqual(result.status, SUCCESS, result.report)

    def count(self, folder=""):
        new = self.maildir / folder / "new"
        return len(list(new.iterdir())) if new.exists() else 0

    @defer.inlineCallbacks
    def test_sender_not_in_address_book(self):
        """vcfilter -c 5 needs no -h/-k and stores rule 0; a stranger's mail
        goes to the rule's folder, a sender in Maildir/addressbook and the
        user himself to the inbox."""
        out, err, code = yield self.vcfilter("-i", "-t", "strangers", "-c", "5", "-f",
                                             "Unknown", "-b", "0", "bob@example.org")
        self.assertEqual((code, err), (0, b""))
        [rule] = yield self.store.filters("bob@example.org")
        self.assertEqual((rule.filter_no, rule.header_name, rule.comparision, rule.keyword),
                         (0, -1, 5, ""))
        out, err, code = yield self.vcfilter("-s", "bob@example.org")
        self.assertIn(b"Sender Not in Address Book", out)
        yield defer.ensureDeferred(self.deliver(mail("Carol <carol@remote.test>")))
        self.assertEqual((self.count(".Unknown"), self.count()), (1, 0))
        (self.maildir / "addressbook").write_text("Carol <Carol@remote.test>\n")
        yield defer.ensureDeferred(self.deliver(mail("Carol <carol@remote.test>")))
        yield defer.ensureDeferred(self.deliver(mail("bob@example.org"), "bob@example.org"))
        yield defer.ensureDeferred(self.deliver(mail("eve@remote.test"), "eve@remote.test"))
        self.assertEqual((self.count(".Unknown"), self.count()), (2, 2))

    @defer.inlineCallbacks
    def test_my_id_not_in_recipients_knows_alias_domains(self):
        """-c 6: mail to the user at an alias domain is his; mail that names
        him nowhere (a list, a Bcc) goes to the rule's folder."""
        yield add_alias_domain(self.admin, "alias.org", "example.org")
        out, err, code = yield self.vcfilter("-i", "-t", "notme", "-c", "6", "-f", "Bcc",
                                             "-b", "0", "bob@example.org")
        self.assertEqual((code, err), (0, b""))
        yield defer.ensureDeferred(self.deliver(mail("carol@remote.test", "bob@alias.org")))
        yield defer.ensureDeferred(self.deliver(mail("carol@remote.test", "Bob@Example.org")))
        self.assertEqual((self.count(".Bcc"), self.count()), (0, 2))
        yield defer.ensureDeferred(self.deliver(mail("carol@remote.test", "all@example.org")))
        self.assertEqual((self.count(".Bcc"), self.count()), (1, 2))

    @defer.inlineCallbacks
    def test_domain_rules_skip_address_comparisons(self):
        """A prefilt rule with comparison 5 or 6 never matches, as upstream."""
        yield self.admin.add_user("prefilt@example.org", "x")
        for number, comparison in ((0, 5), (1, 6)):
            yield self.store.add_filter(VFilter("prefilt@example.org", number, "g", -1,
                                                comparison, "", "Junk", "0"))
        yield defer.ensureDeferred(self.deliver(mail("eve@remote.test", "all@example.org"),
                                                "eve@remote.test"))
        self.assertEqual((self.count(".Junk"), self.count()), (0, 1))


class SqliteAddressBookTests(AddressBookMixin, StoreHome, TestCase):
    """On the embedded SQLite store."""


class MysqlAddressBookTests(AddressBookMixin, MysqlHome, StoreHome, TestCase):
    """On MariaDB (control/host.mysql)."""
