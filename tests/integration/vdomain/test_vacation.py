"""vmoduser -l (vacation) on SQLite and MariaDB: the command writes the
user's .qmail, message and records directory (and removes them with '-');
a delivery to the vacationed user then runs the autoresponder, which queues
one reply per sender (null sender, RFC 3834 fields) and none to lists or
bounces, while the mail still reaches the Maildir under the user's quota."""

import os
import sys
from pathlib import Path

from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.delivery.local import LocalDelivery
from indimail.delivery.result import FAILURE, SUCCESS
from indimail.queue.layout import QueueDir
from indimail.queue.readq import read_todo
from indimail.vdomain.admin import Admin
from indimail.vdomain.vacation import vacation
from tests.unit.delivery.support import FakeEnqueuer, queue_message

from .vhome import MysqlHome, StoreHome

TEXT = b"I am away until Monday.\nYour mail about '%S' will wait.\n"
PLAIN = b"From: Carol <carol@remote.test>\nTo: bob@example.org\nSubject: lunch\n" \
        b"Message-ID: <m1@remote.test>\n\nshall we?\n"
LIST = b"From: news@lists.test\nTo: bob@example.org\nList-Id: <news.lists.test>\n" \
       b"Subject: digest\n\nnews\n"


class VacationMixin:
    maxDiff = None

    @defer.inlineCallbacks
    def setUp(self):
        yield self.make_home("imvac-")
        # the autoresponder beside "vdelivermail", as an installed one would be
        self.bin = self.root / "bin"
        self.bin.mkdir()
        wrapper = self.bin / "autoresponder"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m indimail.cli.autoresponder "$@"\n')
        wrapper.chmod(0o755)
        self.admin = Admin(self.home, self.store, vdelivermail=str(self.bin / "vdelivermail"))
        yield self.admin.add_domain("example.org")
        self.bob = yield self.admin.add_user("bob@example.org", "pw")
        self.bobdir = Path(self.bob.pw_dir)
        self.agent = LocalDelivery(self.home, ControlFiles(self.home.control), FakeEnqueuer(),
                                   reactor=reactor, store=self.store,
                                   env=Environment({"PATH": os.environ.get("PATH", ""),
                                                    "INDIMAIL_HOME": str(self.home.path)}))
        self.msgid = 7000

    def command(self, *args, stdin=None):
        argv = ("-m", "indimail.cli.vmoduser") + args
        if stdin is None:
            return utils.getProcessOutputAndValue(sys.executable, argv, env=self.env)
        return utils.getProcessOutputAndValue(
            "/bin/sh", ("-c", 'f="$1"; shift; exec "$@" < "$f"', "sh", str(stdin),
                        sys.executable) + argv, env=self.env)

    def deliver(self, message, sender="carol@remote.test"):
        self.msgid += 1
        queue, msgid = queue_message(self.home, message, self.msgid)
        return self.agent.deliver(queue, msgid, sender, "example.org-bob@example.org")

    def replies(self):
        """(sender, recipients, text) of the messages queued since (the replies)."""
        queue = QueueDir(self.home.queue_base / "queue1")
        return [(e.sender, [r for _c, r, _d in e.recipients], queue.mess(e.msgid).read_bytes())
                for e in read_todo(queue)]

    def inbox(self):
        return sorted((self.bobdir / "Maildir" / "new").iterdir())

    # -- the command ---------------------------------------------------------

    @defer.inlineCallbacks
    def test_vmoduser_l_sets_and_removes_vacation(self):
        """-l FILE writes .vacation.msg, .vacation.dir and upstream's .qmail
        (autoresponder beside vdelivermail, then the Maildir); -l - removes them."""
        source = self.root / "away.txt"
        source.write_bytes(TEXT)
        out, err, code = yield self.command("-l", str(source), "bob@example.org")
        self.assertEqual((code, err), (0, b""))
        msg = self.bobdir / ".vacation.msg"
        self.assertEqual(out.decode(), f"Successfully wrote Vacation Message to {msg}\n")
        self.assertEqual(msg.read_bytes(), TEXT)
        self.assertTrue((self.bobdir / ".vacation.dir").is_dir())
        responder = Path(sys.executable).parent / "autoresponder"
        self.assertEqual((self.bobdir / ".qmail").read_text(),
                         f"| {responder} -q {self.bobdir}/.vacation.msg "
                         f"{self.bobdir}/.vacation.dir\n{self.bobdir}/Maildir/\n")
        self.assertEqual(os.stat(self.bobdir / ".qmail").st_mode & 0o777, 0o644)
        out, err, code = yield self.command("-l", "-", "bob@example.org")
        self.assertEqual((code, err), (0, b""))
        for name in (".qmail", ".vacation.msg", ".vacation.dir"):
            self.assertFalse((self.bobdir / name).exists(), name)

    @defer.inlineCallbacks
    def test_vmoduser_l_plus_reads_stdin_and_errors(self):
        """-l + takes the text from stdin; an unknown user, an unreadable file
        or '' without a text fails (exit 1) and leaves no .qmail behind."""
        stdin = self.root / "stdin"
        stdin.write_bytes(TEXT)
        out, err, code = yield self.command("-l", "+", "bob@example.org", stdin=stdin)
        self.assertEqual((code, err), (0, b""))
        self.assertTrue(out.startswith(b"Enter Text for Vacation Message. Type ^D"))
        self.assertEqual((self.bobdir / ".vacation.msg").read_bytes(), TEXT)
        yield self.command("-l", "-", "bob@example.org")
        out, err, code = yield self.command("-l", str(self.root / "none"), "bob@example.org")
        self.assertEqual(code, 1)
        self.assertIn(b"none", err)
        self.assertFalse((self.bobdir / ".qmail").exists())
        out, err, code = yield self.command("-l", "", "bob@example.org")
        self.assertEqual(code, 1, "an empty name keeps a text there is not")
        self.assertIn(b".vacation.msg: no vacation message", err)
        self.assertFalse((self.bobdir / ".qmail").exists())
        out, err, code = yield self.command("-l", "-", "eve@example.org")
        self.assertEqual(code, 1)
        self.assertIn(b"no such user eve@example.org", err)

    # -- delivery ------------------------------------------------------------

    async def set_vacation(self):
        source = self.root / "away.txt"
        source.write_bytes(TEXT)
        await vacation(self.admin, "bob@example.org", str(source))

    async def test_vacationed_user_gets_mail_and_sender_one_reply(self):
        """The mail reaches the Maildir; carol gets one reply with a null
        envelope sender and RFC 3834 fields; her next mail gets none; another
        sender gets one."""
        await self.set_vacation()
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(self.inbox()), 1)
        [(sender, recipients, text)] = self.replies()
        self.assertEqual((sender, recipients), ("", ["carol@remote.test"]))
        for line in (b"Auto-Submitted: auto-replied\n", b"From: bob@example.org\n",
                     b"To: carol@remote.test\n", b"In-Reply-To: <m1@remote.test>\n",
                     b"Subject: Autoreply: Re: lunch\n", b"Your mail about 'lunch' will wait.\n"):
            self.assertIn(line, text)
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual((len(self.inbox()), len(self.replies())), (2, 1))
        await self.deliver(PLAIN.replace(b"carol@", b"dave@"), sender="dave@remote.test")
        self.assertEqual(sorted(r[1][0] for r in self.replies()),
                         ["carol@remote.test", "dave@remote.test"])

    async def test_lists_and_bounces_get_no_reply(self):
        """A list message and a bounce (null sender) are delivered, not answered."""
        await self.set_vacation()
        for message, sender in ((LIST, "news-request@lists.test"), (LIST, "news@lists.test"),
                                (PLAIN, "")):
            result = await self.deliver(message, sender)
            self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual((len(self.inbox()), self.replies()), (3, []))

    async def test_vacation_keeps_the_quota(self):
        """The .qmail's Maildir line is the user's own: over quota it bounces."""
        await self.store.update_user(self.bob.with_(pw_shell="50"))
        await self.set_vacation()
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, FAILURE)
        self.assertIn("has insufficient quota", result.report)
        self.assertEqual(self.inbox(), [])

    async def test_removed_vacation_stops_replies(self):
        """After -l - the mail goes straight to the Maildir, unanswered."""
        await self.set_vacation()
        await vacation(self.admin, "bob@example.org", "-")
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual((len(self.inbox()), self.replies()), (1, []))


class SqliteVacationTests(VacationMixin, StoreHome, TestCase):
    """On the embedded SQLite store."""


class MysqlVacationTests(VacationMixin, MysqlHome, StoreHome, TestCase):
    """On MariaDB (control/host.mysql)."""
