"""vdelivermail: store lookup, Maildir++ quota, aliases and the instruction
for unknown users, in-process from LocalDelivery and as the engine alone."""

import os
import sys
from pathlib import Path

from twisted.internet import defer, protocol, reactor
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.config.init import init_home
from indimail.delivery.local import LocalDelivery, vdelivermail_args
from indimail.delivery.program import ProgramOutcome
from indimail.delivery.result import DEFERRAL, FAILURE, SUCCESS
from indimail.vdomain.admin import Admin
from indimail.vdomain.flags import BOUNCE_MAIL
from indimail.vdomain.store import open_store
from indimail.vdomain.vdelivermail import (
    Request, VDeliverMail, header_digest, result_code, seen_before)
from tests.unit.delivery.support import MESSAGE, FakeEnqueuer, queue_message

NOW = 1_700_000_000
BOB = "example.org-bob@example.org"
PREFIX = b"Return-Path: <carol@remote.test>\nDelivered-To: " + BOB.encode() + b"\n"


class ArgsTests(SynchronousTestCase):
    def test_vdelivermail_lines_are_recognised(self):
        """Only a program whose first word's basename is vdelivermail (or vfilter),
        with its two arguments, runs in-process; its last argument is the instruction."""
        self.assertEqual(vdelivermail_args("/usr/bin/vdelivermail '' bounce-no-mailbox"),
                         "bounce-no-mailbox")
        self.assertEqual(vdelivermail_args("vdelivermail '' /var/spool/catch/Maildir/"),
                         "/var/spool/catch/Maildir/")
        self.assertEqual(vdelivermail_args("/usr/bin/vfilter '' bounce-no-mailbox"),
                         "bounce-no-mailbox")
        self.assertIsNone(vdelivermail_args("/usr/bin/procmail '' bounce-no-mailbox"))
        self.assertIsNone(vdelivermail_args("/usr/bin/vdelivermail"))
        self.assertIsNone(vdelivermail_args("vdelivermail 'unbalanced"))

    def test_exit_codes(self):
        """Results map to qmail-local's program exit codes 0, 100, 111."""
        from indimail.delivery.result import DeliveryResult
        self.assertEqual([result_code(DeliveryResult(s, "")) for s in (SUCCESS, FAILURE, DEFERRAL)],
                         [0, 100, 111])


class DupTests(SynchronousTestCase):
    def test_header_digest_ignores_per_copy_lines(self):
        """Received and Delivered-To lines (with continuations) do not change the
        digest; other header lines and the header/body split do."""
        base = Path(self.mktemp())
        base.mkdir()
        one, two, three = base / "1", base / "2", base / "3"
        one.write_bytes(b"Received: from a\n\tby b\nSubject: x\n\nbody one\n")
        two.write_bytes(b"Delivered-To: z@y\nSubject: x\n\nbody two\n")
        three.write_bytes(b"Subject: y\n\nbody one\n")
        self.assertEqual(header_digest(one), header_digest(two))
        self.assertNotEqual(header_digest(one), header_digest(three))

    def test_seen_before_expires(self):
        """A digest is a duplicate within the interval; old records are dropped."""
        maildir = Path(self.mktemp())
        maildir.mkdir()
        self.assertFalse(seen_before(maildir, "a" * 32, NOW, 900))
        self.assertTrue(seen_before(maildir, "a" * 32, NOW + 900, 900))
        self.assertFalse(seen_before(maildir, "a" * 32, NOW + 901, 900))
        self.assertEqual((maildir / "dupmd5").read_bytes(),
                         f"{NOW + 901} {'a' * 32}\n".encode())


class Base(TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.home = init_home(Path(self.mktemp()).absolute(), hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        self.store = yield open_store(self.home, {})
        self.addCleanup(self.store.close)
        self.admin = Admin(self.home, self.store, vdelivermail="/usr/bin/vdelivermail",
                           clock=lambda: NOW)
        yield self.admin.add_domain("example.org")
        self.bob = yield self.admin.add_user("bob@example.org", "pw")
        self.maildir = Path(self.bob.pw_dir) / "Maildir"
        self.enqueuer = FakeEnqueuer()
        self.queue, self.msgid = queue_message(self.home)
        self.agent = LocalDelivery(self.home, ControlFiles(self.home.control), self.enqueuer,
                                   reactor=reactor, store=self.store,
                                   env={"PATH": os.environ.get("PATH", "")})

    def deliver(self, recipient=BOB, sender="carol@remote.test"):
        return self.agent.deliver(self.queue, self.msgid, sender, recipient)

    def new(self, maildir=None):
        new = (maildir or self.maildir) / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def set_instruction(self, instruction):
        path = self.home.domains / "example.org" / ".qmail-default"
        path.write_text(f"| /usr/bin/vdelivermail '' {instruction}\n")


class InProcessTests(Base):

    async def test_delivers_to_users_maildir(self):
        """The .qmail-default line runs in-process: bob's Maildir/new gets the mail
        with qmail-local's Return-Path and Delivered-To lines; the report is
        qmail-local's for one program delivery."""
        result = await self.deliver()
        self.assertEqual((result.status, result.report), (SUCCESS, "did 0+0+1"))
        files = self.new()
        self.assertEqual(len(files), 1)
        self.assertEqual(files[0].read_bytes(), PREFIX + MESSAGE)

    async def test_unknown_user_bounces(self):
        """bounce-no-mailbox: an unknown user fails permanently with IndiMail's text."""
        result = await self.deliver("example.org-nobody@example.org")
        self.assertEqual(result.status, FAILURE)
        self.assertEqual(result.report,
                         "no account nobody@example.org here by that name. indimail (#5.1.5)")

    async def test_unknown_user_delete(self):
        """delete: the mail for an unknown user is dropped, successfully."""
        self.set_instruction("delete")
        result = await self.deliver("example.org-nobody@example.org")
        self.assertEqual(result.status, SUCCESS)
        self.assertEqual(self.new(), [])

    async def test_unknown_user_to_maildir(self):
        """A Maildir path: the mail for an unknown user is kept there."""
        catch = Path(self.mktemp()).absolute() / "Maildir"
        self.set_instruction(f"{catch}/")
        result = await self.deliver("example.org-nobody@example.org")
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertIn("no account nobody@example.org - delivering to", result.report)
        self.assertEqual(len(self.new(catch)), 1)

    async def test_unknown_user_forwarded(self):
        """An address: the mail for an unknown user is re-injected to it with our
        Delivered-To line."""
        self.set_instruction("catchall@elsewhere.test")
        result = await self.deliver("example.org-nobody@example.org")
        self.assertEqual(result.status, SUCCESS, result.report)
        [msg] = self.enqueuer.finished
        self.assertEqual(msg.recipients, ["catchall@elsewhere.test"])
        self.assertEqual(msg.sender, "carol@remote.test")
        self.assertTrue(msg.data.startswith(
            b"Delivered-To: example.org-nobody@example.org\n" + MESSAGE[:10]))

    async def test_unknown_user_relayed_to_peer(self):
        """domain:ip:port: the mail for an unknown user goes over SMTP to that peer
        (qmail-remote with SMTPROUTE), as a cluster does."""
        from twisted.internet import endpoints
        received = []
        factory = protocol.Factory.forProtocol(lambda: _Peer(received))
        port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory)
        self.addCleanup(port.stopListening)
        self.set_instruction(f"example.org:127.0.0.1:{port.getHost().port}")
        result = await self.deliver("example.org-nobody@example.org")
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertIn("no account nobody@example.org - delivering to example.org:127.0.0.1:",
                      result.report)
        self.assertIn(b"RCPT TO:<nobody@example.org>", received)
        self.assertIn(b"Subject: hi", received)

    async def test_inactive_user_bounces(self):
        """A user in indibak gets IndiMail's inactive text and a bounce."""
        await self.store.set_inactive("bob", "example.org", True)
        result = await self.deliver()
        self.assertEqual(result.status, FAILURE)
        self.assertEqual(result.report, "account bob@example.org is inactive. indimail(#5.1.3)")
        self.assertEqual(self.new(), [])

    async def test_alias_domain(self):
        """bob@alias.test finds bob@example.org through the alias domain."""
        await self.store.add_alias_domain("alias.test", "example.org")
        engine = VDeliverMail(self.store, thread=_thread, forward=_no_forward,
                              program=_no_program, clock=lambda: NOW)
        mess = self.queue.mess(self.msgid)
        result = await engine.deliver(Request(mess, "c@r.test", "bob", "alias.test",
                                              "bounce-no-mailbox", PREFIX))
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(self.new()), 1)

    async def test_valias_lines(self):
        """valias lines of an address replace its mailbox: forward, Maildir and program."""
        other = Path(self.mktemp()).absolute() / "Maildir"
        out = Path(self.mktemp()).absolute()
        for line in ("fwd@elsewhere.test", f"{other}/", f"|cat > {out}"):
            await self.store.add_alias_line("bob", "example.org", line)
        result = await self.deliver()
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(self.new(), [])
        self.assertEqual(len(self.new(other)), 1)
        self.assertEqual(out.read_bytes(), MESSAGE)
        [msg] = self.enqueuer.finished
        self.assertEqual(msg.recipients, ["fwd@elsewhere.test"])

    async def test_valias_without_user(self):
        """An alias with no user behind it is delivered by its lines."""
        await self.store.add_alias_line("sales", "example.org", "team@elsewhere.test")
        result = await self.deliver("example.org-sales@example.org")
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(self.enqueuer.finished[0].recipients, ["team@elsewhere.test"])

    async def test_over_quota_bounces(self):
        """A message that does not fit the Maildir++ quota bounces with IndiMail's
        text; one that fits is counted in maildirsize."""
        size = len(PREFIX) + len(MESSAGE)
        await self.store.update_user(self.bob.with_(pw_shell=str(size + 10)))
        result = await self.deliver()
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual((self.maildir / "maildirsize").read_bytes(),
                         f"{size + 10}S\n0 0\n{size} 1\n".encode())
        result = await self.deliver()
        self.assertEqual(result.status, FAILURE)
        self.assertEqual(result.report,
                         f"bob@example.org has insufficient quota. {size}/{size}:1/0:"
                         f"{size + 10}. indimail (#5.1.4)")
        self.assertEqual(len(self.new()), 1)

    async def test_over_quota_held(self):
        """With Maildir/holdoverquota present, over-quota mail is deferred instead."""
        await self.store.update_user(self.bob.with_(pw_shell="10"))
        (self.maildir / "holdoverquota").write_text("")
        result = await self.deliver()
        self.assertEqual(result.status, DEFERRAL)
        self.assertIn("has insufficient quota", result.report)

    async def test_bounce_mail_flag(self):
        """pw_gid BOUNCE_MAIL: the account is locked and its mail bounces."""
        await self.store.update_user(self.bob.with_(pw_gid=BOUNCE_MAIL))
        result = await self.deliver()
        self.assertEqual(result.status, FAILURE)
        self.assertEqual(result.report,
                         "account bob@example.org locked/overquota 0/0. indimail (#5.1.1)")

    async def test_bounce_mail_flag_with_room(self):
        """BOUNCE_MAIL stands aside while a 1 MB message still fits the quota."""
        await self.store.update_user(self.bob.with_(pw_gid=BOUNCE_MAIL, pw_shell="5000000"))
        result = await self.deliver()
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(self.new()), 1)

    async def test_discard_bounce(self):
        """DISCARD_BOUNCE turns a bounce into a silent success."""
        self.agent.env = Environment({"DISCARD_BOUNCE": "1"})
        result = await self.deliver("example.org-nobody@example.org")
        self.assertEqual(result.status, SUCCESS)

    async def test_eliminate_dups(self):
        """ELIMINATE_DUPS: a second copy with the same header (Delivered-To aside)
        within DUPLICATE_INTERVAL is dropped; past the interval it is delivered."""
        clock = [NOW]
        self.agent.env = Environment({"ELIMINATE_DUPS": "1", "DUPLICATE_INTERVAL": "60"})
        self.agent.clock = lambda: clock[0]
        for expected in (1, 1, 2):
            result = await self.deliver()
            self.assertEqual(result.status, SUCCESS, result.report)
            self.assertEqual(len(self.new()), expected)
            clock[0] += 40
        self.assertIn(b" ", (self.maildir / "dupmd5").read_bytes())

    async def test_maildirfolder(self):
        """MAILDIRFOLDER puts the mail in that folder (made with its maildirfolder
        marker) while the quota is kept in the Maildir itself."""
        await self.store.update_user(self.bob.with_(pw_shell="100000"))
        self.agent.env = Environment({"MAILDIRFOLDER": "Spam"})
        result = await self.deliver()
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(self.new(), [])
        self.assertEqual(len(self.new(self.maildir / ".Spam")), 1)
        self.assertTrue((self.maildir / ".Spam" / "maildirfolder").exists())
        self.assertTrue((self.maildir / "maildirsize").read_bytes().startswith(b"100000S\n"))

    async def test_store_opened_once(self):
        """Without a store given, LocalDelivery opens one lazily and keeps it."""
        agent = LocalDelivery(self.home, ControlFiles(self.home.control), self.enqueuer,
                              reactor=reactor, env={})
        first = await agent._vstore()
        self.addCleanup(first.close)
        self.assertIs(await agent._vstore(), first)


class _Peer(LineReceiver):
    """Just enough of an SMTP server: every command gets 250, DATA 354."""

    def __init__(self, lines):
        self.lines = lines
        self.in_data = False

    def connectionMade(self):
        self.sendLine(b"220 peer.test ESMTP")

    def lineReceived(self, line):
        self.lines.append(line)
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.sendLine(b"250 ok queued")
            return
        verb = line[:4].upper()
        if verb == b"DATA":
            self.in_data = True
            self.sendLine(b"354 go ahead")
        elif verb == b"QUIT":
            self.sendLine(b"221 bye")
            self.transport.loseConnection()
        else:
            self.sendLine(b"250 ok")


def _thread(fn, *args):
    return defer.maybeDeferred(fn, *args)


async def _no_forward(recipients):
    raise AssertionError("no forward expected")


async def _no_program(command):
    return ProgramOutcome(FAILURE, False, "no program expected", 100)


class CommandTests(Base):
    """The vdelivermail command, run as qmail-local runs a program."""

    async def run_command(self, ext, instruction="bounce-no-mailbox"):
        from twisted.internet import utils
        mess = self.queue.mess(self.msgid)
        env = {"INDIMAIL_HOME": str(self.home.path), "EXT": ext, "HOST": "example.org",
               "SENDER": "carol@remote.test", "PATH": os.environ.get("PATH", ""),
               "DTLINE": f"Delivered-To: example.org-{ext}@example.org\n",
               "RPLINE": "Return-Path: <carol@remote.test>\n"}
        code = ("import sys; from indimail.cli.vdelivermail import main; "
                "main(sys.argv[1:])")
        out, err, status = await utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", 'exec "$0" -c "$1" "" "$2" < "$3"', sys.executable, code,
                        instruction, str(mess)], env=env, reactor=reactor)
        return out.decode(), err.decode(), status

    async def test_command_delivers(self):
        """Exit 0 and the mail in bob's Maildir with RPLINE and DTLINE first."""
        out, err, status = await self.run_command("bob")
        self.assertEqual(status, 0, out + err)
        [path] = self.new()
        self.assertEqual(path.read_bytes(), PREFIX + MESSAGE)

    async def test_command_bounces_unknown_user(self):
        """Exit 100 and IndiMail's text for an unknown user."""
        out, err, status = await self.run_command("nobody")
        self.assertEqual(status, 100, out + err)
        self.assertIn("no account nobody@example.org here by that name.", out)
