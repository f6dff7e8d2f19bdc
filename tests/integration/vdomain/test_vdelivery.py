"""vdelivermail/vfilter in-process on SQLite and on MariaDB: vfilter rules,
the over-quota warning, lastdeliver bookkeeping and cluster routing to a real
SMTP receiver (Postfix's smtp-sink) on loopback; and the ismaildup command."""

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.config.init import init_home
from indimail.delivery.local import LocalDelivery
from indimail.delivery.result import FAILURE, SUCCESS
from indimail.testing import ChildProcess, free_port, smtp_sink_argv, wait_for
from indimail.vdomain import flags as F
from indimail.vdomain.admin import Admin
from indimail.vdomain.records import VFilter
from indimail.vdomain.store import VStore
from tests.unit.delivery.support import FakeEnqueuer, queue_message

from .helpers import mysql_backend, sqlite_backend

NOW = 1_700_000_000
SPAM = b"From: carol@remote.test\nSubject: offer\nX-Bogosity: Yes, spamicity=0.99\n\nbuy\n"
FAILURE_NOTICE = b"From: MAILER-DAEMON@remote.test\nSubject: failure notice\n\nsorry\n"
PLAIN = b"From: carol@remote.test\nSubject: hello\n\nhi bob\n"


class DeliveryMixin:
    maxDiff = None

    @defer.inlineCallbacks
    def setUp(self):
        self.home = init_home(Path(self.mktemp()).absolute(), hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        self.store = VStore(self.make_backend(), create_database=True)
        yield self.store.open()
        self.addCleanup(self.store.close)
        self.admin = Admin(self.home, self.store, vdelivermail="/usr/bin/vdelivermail",
                           clock=lambda: NOW)
        yield self.admin.add_domain("example.org")
        self.bob = yield self.admin.add_user("bob@example.org", "pw")
        self.maildir = Path(self.bob.pw_dir) / "Maildir"
        self.enqueuer = FakeEnqueuer()
        self.agent = LocalDelivery(self.home, ControlFiles(self.home.control), self.enqueuer,
                                   reactor=reactor, store=self.store,
                                   env={"PATH": os.environ.get("PATH", "")})
        self.msgid = 4000

    def use(self, program, **env):
        """.qmail-default names *program*; the delivery environment is *env*."""
        (self.home.domains / "example.org" / ".qmail-default").write_text(
            f"| /usr/bin/{program} '' bounce-no-mailbox\n")
        self.agent.env = Environment({"PATH": os.environ.get("PATH", ""), **env})

    def deliver(self, message, local="bob"):
        self.msgid += 1
        queue, msgid = queue_message(self.home, message, self.msgid)
        return self.agent.deliver(queue, msgid, "carol@remote.test",
                                  f"example.org-{local}@example.org")

    def files(self, folder=""):
        new = self.maildir / folder / "new"
        return sorted(new.iterdir()) if new.exists() else []

    # -- vfilter -------------------------------------------------------------

    async def filters(self):
        await self.admin.add_user("prefilt@example.org", "x")
        await self.store.add_filter(VFilter("prefilt@example.org", 2, "spamFilter", 33, 3,
                                            "Yes, spamicity=", "Spam", "0"))
        out = Path(tempfile.mkdtemp(prefix="vf"))
        self.addCleanup(shutil.rmtree, out)
        await self.store.add_filter(VFilter("bob@example.org", 2, "myfilter", 2, 0,
                                            "failure notice", "/NoDeliver",
                                            f"2|cat > {out}/got"))
        (self.maildir / "vfilter").touch()
        return out / "got"

    async def test_vfilter_rules_act(self):
        """With a vfilter line: spam goes to .Spam (prefilt rule), 'failure notice'
        to the program only, other mail to the inbox."""
        got = await self.filters()
        self.use("vfilter")
        for message in (SPAM, FAILURE_NOTICE, PLAIN):
            result = await self.deliver(message)
            self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(self.files(".Spam")), 1)
        self.assertTrue(self.files(".Spam")[0].read_bytes().endswith(SPAM))
        [inbox] = self.files()
        self.assertTrue(inbox.read_bytes().endswith(PLAIN))
        self.assertEqual(got.read_bytes(), FAILURE_NOTICE)

    async def test_vdelivermail_line_ignores_rules(self):
        """Rules apply only when .qmail-default names vfilter, as upstream."""
        await self.filters()
        self.use("vdelivermail")
        result = await self.deliver(SPAM)
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual((len(self.files()), self.files(".Spam")), (1, []))

    async def test_no_user_filter_flag_skips_user_and_postfilt_rules(self):
        """Without Maildir/vfilter the user's (and postfilt's) rules are not read;
        Maildir/noprefilt turns the domain's prefilt rules off."""
        await self.filters()
        (self.maildir / "vfilter").unlink()
        (self.maildir / "noprefilt").touch()
        self.use("vfilter")
        for message in (SPAM, FAILURE_NOTICE):
            result = await self.deliver(message)
            self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(self.files()), 2)

    async def test_filter_bounce_and_forward(self):
        """Action 3: forward to the address, then bounce with vfilter's text."""
        await self.store.add_filter(VFilter("bob@example.org", 2, "f", 2, 1, "offer",
                                            "/NoDeliver", "3&editor@remote.test"))
        (self.maildir / "vfilter").touch()
        self.use("vfilter")
        result = await self.deliver(SPAM)
        self.assertEqual(result.status, FAILURE)
        self.assertIn("Hi. This is the IndiMail MDA for example.org\nI'm afraid I cannot "
                      "accept your message as a configured filter has decided\n", result.report)
        self.assertEqual(self.enqueuer.finished[0].recipients, ["editor@remote.test"])
        self.assertEqual(self.files(), [])

    # -- quota: warning and lastdeliver -------------------------------------

    async def test_quota_warning_once_a_week(self):
        """Past QUOTAWARN1 percent the user gets upstream's warning in the Maildir
        and a QuotaWarn stamp; the next delivery does not warn again."""
        await self.store.update_user(self.bob.with_(pw_shell="400"))
        self.use("vdelivermail", QUOTAWARN1="25")
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, SUCCESS, result.report)
        texts = [p.read_bytes() for p in self.files()]
        warnings = [t for t in texts if b"Subject: [Warning] Your Mail Box is 25% Full" in t]
        self.assertEqual(len(warnings), 1)
        self.assertIn(b"To: bob@example.org\n", warnings[0])
        self.assertTrue((self.maildir / "QuotaWarn").exists())
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(self.files()), 3)

    async def test_over_quota_sets_bounce_flag_and_usage(self):
        """A box past its quota gets BOUNCE_MAIL and a userquota row
        (vset_lastdeliver); once a megabyte fits again the flag is cleared."""
        await self.store.update_user(self.bob.with_(pw_shell="100"))
        self.use("vdelivermail", OVERQUOTA_MAILSIZE="10000")
        result = await self.deliver(PLAIN)                 # forced in: small message
        self.assertEqual(result.status, SUCCESS, result.report)
        self.use("vdelivermail")
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, FAILURE)
        self.assertIn("has insufficient quota", result.report)
        bob = await self.store.get_user("bob", "example.org")
        self.assertTrue(bob.has(F.BOUNCE_MAIL))
        self.assertGreater(await self.store.usage("bob", "example.org"), 100)
        result = await self.deliver(PLAIN)
        self.assertIn("locked/overquota", result.report)
        await self.store.update_user(bob.with_(pw_shell="5000000"))
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertFalse((await self.store.get_user("bob", "example.org")).has(F.BOUNCE_MAIL))

    async def test_date_folder(self):
        """vmoduser -D: Maildir/folder.dateformat sends mail to the dated folder
        its strftime format names (local time of delivery)."""
        from indimail.vdomain.modify import UserChange, modify_user
        await modify_user(self.admin, "bob@example.org", UserChange(date_format=".%Y"))
        self.assertEqual((self.maildir / "folder.dateformat").read_text(), ".%Y\n")
        self.use("vdelivermail")
        result = await self.deliver(PLAIN)
        self.assertEqual(result.status, SUCCESS, result.report)
        year = time.strftime("%Y", time.localtime())
        self.assertEqual(len(self.files("." + year)), 1)
        self.assertEqual(self.files(), [])

    async def test_mail_group_delivery_is_recorded(self):
        """A 'MailGroup' user's deliveries are noted in lastauth ('deli'), so the
        group never looks inactive; other users' are not."""
        self.use("vdelivermail")
        await self.deliver(PLAIN)
        self.assertIsNone(await self.store.last_auth("bob", "example.org", "deli"))
        await self.store.update_user(self.bob.with_(pw_gecos="MailGroup sales"))
        await self.deliver(PLAIN)
        self.assertIsNotNone(await self.store.last_auth("bob", "example.org", "deli"))

    # -- cluster -------------------------------------------------------------

    async def start_sink(self):
        dump = tempfile.mkdtemp(prefix="sink")
        self.addCleanup(shutil.rmtree, dump, True)
        port = free_port()
        sink = ChildProcess(reactor, smtp_sink_argv(port, dump), env={})
        self.addCleanup(sink.kill)

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        await wait_for(reactor, listening, what="smtp-sink to listen")
        return port, dump

    async def test_user_on_another_mail_store_is_relayed(self):
        """hostcntrl puts carol on mail2 (host_table 127.0.0.1, smtp_port gives
        smtp-sink's port): her mail is relayed there over SMTP."""
        port, dump = await self.start_sink()
        await self.store.set_mailstore("carol", "example.org", "mail2")
        await self.store.set_host_ip("mail2", "127.0.0.1")
        await self.store.set_smtp_port("127.0.0.1", "*", "example.org", port)
        self.use("vdelivermail", HOSTID="mail1")
        result = await self.deliver(PLAIN, "carol")
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertIn("127.0.0.1 accepted message", result.report)
        files = await wait_for(reactor, lambda: os.listdir(dump), what="relayed message")
        dumped = Path(dump, files[0]).read_bytes()
        self.assertIn(b"X-Rcpt-Args: <carol@example.org>", dumped)
        self.assertIn(b"Subject: hello\n", dumped)

    async def test_user_placed_on_this_store_is_not_relayed(self):
        """When hostcntrl names this node (HOSTID) the unknown user bounces as usual."""
        await self.store.set_mailstore("carol", "example.org", "mail1")
        await self.store.set_host_ip("mail1", "127.0.0.1")
        self.use("vdelivermail", HOSTID="mail1")
        result = await self.deliver(PLAIN, "carol")
        self.assertEqual(result.status, FAILURE)
        self.assertIn("no account carol@example.org here by that name", result.report)


class SqliteDeliveryTests(DeliveryMixin, TestCase):
    def make_backend(self):
        return sqlite_backend(self)

    async def test_ismaildup_command(self):
        """ismaildup (the seed's argument order) runs the program once per message
        and discards a copy within DUPLICATE_INTERVAL when ELIMINATE_DUPS is set."""
        work = Path(self.mktemp()).absolute()
        (work / "Maildir").mkdir(parents=True)
        prog = work / "deliver.sh"
        prog.write_text(f'#!/bin/sh\ncat >> {work}/got\n')
        prog.chmod(0o755)
        mess = work / "m"
        mess.write_bytes(b"Received: from a\nSubject: dup\n\nbody\n")
        env = {"PATH": os.environ.get("PATH", ""), "ELIMINATE_DUPS": "1"}
        code = "import sys; from indimail.cli.ismaildup import main; main(sys.argv[1:])"
        for received in (b"Received: from a", b"Received: from b"):
            mess.write_bytes(received + b"\nSubject: dup\n\nbody\n")
            out, err, status = await utils.getProcessOutputAndValue(
                "/bin/sh", ["-c", 'f="$1"; shift; exec "$@" < "$f"', "sh", str(mess),
                            sys.executable, "-c", code, str(prog), f"{work}/Maildir/"],
                env=env, reactor=reactor)
            self.assertEqual(status, 0, err)
        self.assertEqual(err, b"ismaildup: discarding duplicate msg\n")
        self.assertEqual((work / "got").read_bytes(), b"Received: from a\nSubject: dup\n\nbody\n")
        self.assertTrue((work / "Maildir" / "dupmd5").exists())


class MysqlDeliveryTests(DeliveryMixin, TestCase):
    def make_backend(self):
        return mysql_backend(self)
