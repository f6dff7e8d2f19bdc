"""The accesslist plugin: sender/recipient access rules (seed "SMTP Access List")."""

from __future__ import annotations

import inspect
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.plugins.api import Verdict
from indimail.plugins.context import HookContext
from indimail.policy.accesslist import (DENIED, AccessList, AccessListError, denied,
                                        parse_accesslist)
from indimail.smtp.session import Session, Transaction
from indimail.testing import wait_for
from tests.unit.smtp.support import Harness

SEED = ["rcpt:ceo@indimail.org:country_distribution_list@indimail.org",
        "rcpt:md@indimail.org:country_distribution_list@indimail.org",
        "from:recruiter@gmail.com:hr_manager@indimail.org"]
UACL = ["rcpt:*example.com:*@example1.com", "from:*@example1.com:*@example.com"]


def allowed(lines, sender, recipient, qregex=False) -> bool:
    return denied(parse_accesslist(lines), sender, recipient, qregex) is None


def context(env=None, sender="a@example.net") -> HookContext:
    session = Session(env=Environment(env or {}), remote_ip="192.0.2.9")
    return HookContext(session, Transaction(sender), None, Clock(), Logger())


class RulesTest(SynchronousTestCase):

    def test_rcpt_rule_restricts_recipient_to_named_senders(self):
        """Only ceo@ and md@ may write to the distribution list; others are refused,
        and other recipients are not affected."""
        dl = "country_distribution_list@indimail.org"
        self.assertTrue(allowed(SEED, "ceo@indimail.org", dl))
        self.assertTrue(allowed(SEED, "md@indimail.org", dl))
        self.assertFalse(allowed(SEED, "clerk@indimail.org", dl))
        self.assertTrue(allowed(SEED, "clerk@indimail.org", "anyone@indimail.org"))

    def test_from_rule_restricts_sender_to_named_recipients(self):
        """recruiter@gmail.com may reach hr_manager@ only; other senders are free."""
        self.assertTrue(allowed(SEED, "recruiter@gmail.com", "hr_manager@indimail.org"))
        self.assertFalse(allowed(SEED, "recruiter@gmail.com", "ceo@indimail.org"))
        self.assertTrue(allowed(SEED, "friend@gmail.com", "ceo@indimail.org"))

    def test_seed_uacl_examples_with_wildmat(self):
        """The seed's uacl session: two domains that may only talk to each other."""
        self.assertTrue(allowed(UACL, "test@example.com", "test@example1.com"))
        self.assertFalse(allowed(UACL, "test@indimail.org", "test@example1.com"))
        self.assertTrue(allowed(UACL, "test@example1.com", "test@example.com"))
        self.assertFalse(allowed(UACL, "test@example1.com", "manvendra@indimail.org"))

    def test_bounces_postmaster_and_abuse_are_never_refused(self):
        """The null sender (and #@[]) and mail to postmaster/abuse pass every rule."""
        rules = ["rcpt:nobody@nowhere:*", "from:*:nobody@nowhere"]
        self.assertFalse(allowed(rules, "x@example.com", "y@example.com"))
        self.assertTrue(allowed(rules, "", "y@example.com"))
        self.assertTrue(allowed(rules, "#@[]", "y@example.com"))
        self.assertTrue(allowed(rules, "x@example.com", "postmaster@example.com"))
        self.assertTrue(allowed(rules, "x@example.com", "abuse"))

    def test_qregex_uses_case_insensitive_regular_expressions(self):
        """With QREGEX the patterns are regular expressions (unanchored, any case)."""
        rules = [r"rcpt:^(ceo|md)@indimail\.org$:^list@indimail\.org$"]
        self.assertTrue(allowed(rules, "CEO@indimail.org", "list@indimail.org", qregex=True))
        self.assertFalse(allowed(rules, "clerk@indimail.org", "list@indimail.org",
                                 qregex=True))
        # the same line read as wildmat matches nothing, so nothing is refused
        self.assertTrue(allowed(rules, "clerk@indimail.org", "list@indimail.org"))

    def test_bad_regex_is_an_error(self):
        """A pattern that is not a regular expression raises AccessListError."""
        with self.assertRaises(AccessListError):
            denied(parse_accesslist(["rcpt:(:x@y"]), "a@b", "x@y", True)

    def test_unknown_types_and_short_lines_are_ignored(self):
        """Lines that are not rcpt:/from: with two colons do not count."""
        self.assertEqual(parse_accesslist(["deny:a:b", "rcpt:nocolon", "from:a:b"]),
                         parse_accesslist(["from:a:b"]))


class PluginTest(TestCase):

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.plugin = AccessList(ControlFiles(self.dir), reactor, check_interval=0)

    async def test_refuses_with_upstream_text(self):
        """A denied pair is answered 553 with upstream's text; an allowed one continues."""
        (self.dir / "accesslist").write_text("\n".join(SEED) + "\n")
        result = await self.plugin.hook_rcpt(context(sender="x@indimail.org"),
                                       "country_distribution_list@indimail.org")
        self.assertEqual((result.verdict, result.code, result.text),
                         (Verdict.DENY, 553, DENIED))
        self.assertIsNone(await self.plugin.hook_rcpt(context(sender="ceo@indimail.org"),
                                                "country_distribution_list@indimail.org"))

    async def test_no_file_no_check(self):
        """Without control/accesslist every transaction passes."""
        self.assertIsNone(await self.plugin.hook_rcpt(context(), "b@example.com"))

    async def test_absent_file_answers_at_once(self):
        """Once the file was found absent, the hook returns None itself (no
        coroutine) until the check interval has passed; a file written
        meanwhile is applied after that."""
        clock = Clock()

        class TimedReactor:   # the real reactor's threads, the test's time
            seconds = clock.seconds
            getThreadPool = reactor.getThreadPool
            callFromThread = reactor.callFromThread

        plugin = AccessList(ControlFiles(self.dir), TimedReactor())
        first = plugin.hook_rcpt(context(), "b@example.com")
        self.assertTrue(inspect.iscoroutine(first))
        self.assertIsNone(await first)
        self.assertIsNone(plugin.hook_rcpt(context(), "b@example.com"))
        (self.dir / "accesslist").write_text("from:*@example.net:ok@example.com\n")
        clock.advance(1)
        self.assertEqual((await plugin.hook_rcpt(context(), "b@example.com")).code, 553)

    async def test_accesslist_variable_names_another_file(self):
        """ACCESSLIST names the file (relative to the control directory)."""
        (self.dir / "acl.other").write_text("from:*@example.net:ok@example.com\n")
        env = {"ACCESSLIST": "acl.other"}
        self.assertIsNone(await self.plugin.hook_rcpt(context(), "b@example.com"))
        result = await self.plugin.hook_rcpt(context(env), "b@example.com")
        self.assertEqual(result.code, 553)
        self.assertIsNone(await self.plugin.hook_rcpt(context(env), "ok@example.com"))

    async def test_file_edits_are_seen(self):
        """The rules are re-read when the file changes."""
        path = self.dir / "accesslist"
        path.write_text("from:*@example.net:ok@example.com\n")
        self.assertEqual((await self.plugin.hook_rcpt(context(), "b@example.com")).code, 553)
        path.write_text("# nothing now\n")
        self.assertIsNone(await self.plugin.hook_rcpt(context(), "b@example.com"))

    async def test_qregex_from_control_file(self):
        """control/qregex holding 1 switches on regular expressions."""
        (self.dir / "accesslist").write_text("from:^a@example\\.net$:^ok@:\n")
        self.assertIsNone(await self.plugin.hook_rcpt(context(), "b@example.com"))
        (self.dir / "qregex").write_text("1\n")
        self.assertEqual((await self.plugin.hook_rcpt(context(), "b@example.com")).code, 553)

    async def test_bad_regex_is_a_temporary_failure(self):
        """A broken regular expression answers upstream's 451 local system failure."""
        (self.dir / "accesslist").write_text("from:(:x\n")
        result = await self.plugin.hook_rcpt(context({"QREGEX": "1"}), "b@example.com")
        self.assertEqual((result.verdict, result.code), (Verdict.DENYSOFT, 451))
        self.assertEqual(result.text, "Requested action aborted: local system failure (#4.3.0)")


class ProtocolTest(TestCase):

    async def test_rcpt_refused_in_session(self):
        """In an SMTP session the denied RCPT gets 553 and a permitted one 250."""
        h = Harness(self)
        Path(h.control.directory, "accesslist").write_text(
            "rcpt:boss@example.com:list@example.com\n")
        h.send("HELO client\r\nMAIL FROM:<clerk@example.com>\r\n"
               "RCPT TO:<list@example.com>\r\nRCPT TO:<other@example.com>\r\n")
        await wait_for(reactor, lambda: h.transport.value().count(b"\r\n") >= 5,
                       what="four replies")
        self.assertEqual(h.replies()[1:], [
            "250 ok", "553 sorry, sites access list denies transaction (#5.7.1)", "250 ok"])
