"""The hostaccess plugin: sender domain / client IP pairs (upstream tablematch.c)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.plugins.api import Verdict
from indimail.plugins.context import HookContext
from indimail.policy.hostaccess import (DENIED, HostAccess, host_allowed, match_ip,
                                        parse_hostaccess)
from indimail.smtp.session import Session, Transaction
from indimail.testing import wait_for
from tests.unit.smtp.support import Harness

# qmail-smtpd(8)'s example
MAN = parse_hostaccess(["*:202.133.22.1", "yahoo.com:202.144.77.5",
                        "abc.com:202.10-33.54.5", "indimail.org:*"])


def context(ip: str, env=None, sender="a@example.net") -> HookContext:
    session = Session(env=Environment(env or {}), remote_ip=ip)
    return HookContext(session, Transaction(sender), None, Clock(), Logger())


class MatchIpTest(SynchronousTestCase):

    def test_forms(self):
        """Exact addresses, * fields, ? digits and a-b ranges, as matchinet()."""
        self.assertTrue(match_ip("10.1.2.3", "10.1.2.3"))
        self.assertFalse(match_ip("10.1.2.3", "10.1.2.4"))
        self.assertTrue(match_ip("10.1.2.3", "10.1.*.*"))
        self.assertFalse(match_ip("10.2.2.3", "10.1.*.*"))
        self.assertTrue(match_ip("192.86.25.123", "192.86.2?.12?"))
        self.assertFalse(match_ip("192.86.35.123", "192.86.2?.12?"))
        self.assertTrue(match_ip("202.20.54.5", "202.10-33.54.5"))
        self.assertFalse(match_ip("202.34.54.5", "202.10-33.54.5"))
        self.assertTrue(match_ip("210.210.122.81", "210.210.122.80-81"))
        self.assertTrue(match_ip("10.0.0.200", "10.0.0.100-"))

    def test_partial_address_matches_only_itself(self):
        """A plain (shortened) address is no prefix: "10.1" does not match 10.1.2.3."""
        self.assertFalse(match_ip("10.1.2.3", "10.1"))


class TableTest(SynchronousTestCase):

    def test_manual_example(self):
        """The man page's table: listed pairs pass, other domains from a listed IP do not."""
        self.assertTrue(host_allowed(MAN, "202.133.22.1", "x@anything.example"))
        self.assertTrue(host_allowed(MAN, "202.144.77.5", "joe@yahoo.com"))
        self.assertFalse(host_allowed(MAN, "202.144.77.5", "joe@abc.com"))
        self.assertTrue(host_allowed(MAN, "202.20.54.5", "joe@abc.com"))
        self.assertTrue(host_allowed(MAN, "8.8.8.8", "joe@indimail.org"))
        self.assertTrue(host_allowed(MAN, "8.8.8.8", "joe@unlisted.example"))

    def test_domain_masquerade_lets_other_domains_use_a_listed_ip(self):
        """DOMAIN_MASQUERADE: a listed IP may send for domains it is not listed with."""
        self.assertTrue(host_allowed(MAN, "202.144.77.5", "joe@abc.com", masquerade=True))

    def test_paranoid_keeps_a_listed_domain_to_its_ips(self):
        """Without PARANOID yahoo.com may come from anywhere; with it only from its IP."""
        self.assertTrue(host_allowed(MAN, "8.8.8.8", "joe@yahoo.com"))
        self.assertFalse(host_allowed(MAN, "8.8.8.8", "joe@yahoo.com", paranoid=True))
        self.assertTrue(host_allowed(MAN, "202.144.77.5", "joe@yahoo.com", paranoid=True))

    def test_domains_compare_without_case(self):
        """Yahoo.COM is yahoo.com."""
        self.assertTrue(host_allowed(MAN, "202.144.77.5", "joe@Yahoo.COM"))

    def test_null_sender_line(self):
        """A <> line is about the null sender, which a * domain does not cover."""
        rules = parse_hostaccess(["<>:10.0.0.1", "*:10.0.0.2"])
        self.assertTrue(host_allowed(rules, "10.0.0.1", ""))
        self.assertFalse(host_allowed(rules, "10.0.0.2", ""))
        self.assertFalse(host_allowed(rules, "10.0.0.1", "x@example.com"))

    def test_empty_table_allows_everything(self):
        """No lines (or no file): no restriction."""
        self.assertTrue(host_allowed([], "10.0.0.1", "x@example.com", paranoid=True))


class PluginTest(TestCase):

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.plugin = HostAccess(ControlFiles(self.dir), reactor, check_interval=0)

    async def test_refusal_text(self):
        """A refused pair is 553 with upstream's text."""
        (self.dir / "hostaccess").write_text("example.net:10.0.0.1\n")
        result = await self.plugin.hook_mail(context("10.0.0.1", sender="x@example.org"),
                                       "x@example.org")
        self.assertEqual((result.verdict, result.code, result.text),
                         (Verdict.DENY, 553, DENIED))
        self.assertIsNone(await self.plugin.hook_mail(context("10.0.0.1"), "a@example.net"))

    async def test_variables_of_the_session_apply(self):
        """PARANOID/DOMAIN_MASQUERADE are read from the session's environment."""
        (self.dir / "hostaccess").write_text("example.net:10.0.0.1\n")
        self.assertIsNone(await self.plugin.hook_mail(context("10.0.0.9"), "a@example.net"))
        result = await self.plugin.hook_mail(context("10.0.0.9", {"PARANOID": ""}), "a@example.net")
        self.assertEqual(result.code, 553)
        self.assertIsNone(await self.plugin.hook_mail(
            context("10.0.0.1", {"DOMAIN_MASQUERADE": ""}), "x@example.org"))

    async def test_hostaccess_variable_names_another_file(self):
        """HOSTACCESS overrides the file name."""
        (self.dir / "ha2").write_text("example.net:10.0.0.1\n")
        self.assertIsNone(await self.plugin.hook_mail(context("10.0.0.1"), "x@example.org"))
        result = await self.plugin.hook_mail(context("10.0.0.1", {"HOSTACCESS": "ha2"}),
                                       "x@example.org")
        self.assertEqual(result.code, 553)


class ProtocolTest(TestCase):

    async def test_mail_refused_in_session(self):
        """In a session from a listed IP, MAIL with another domain gets 553."""
        h = Harness(self)
        Path(h.control.directory, "hostaccess").write_text("partner.example:192.0.2.7\n")
        h.send("HELO client\r\nMAIL FROM:<a@other.example>\r\n"
               "MAIL FROM:<a@partner.example>\r\n")
        await wait_for(reactor, lambda: h.transport.value().count(b"\r\n") >= 4,
                       what="three replies")
        self.assertEqual(h.replies()[1:], ["553 sorry, your host has been denied (#5.7.1)",
                                           "250 ok"])
