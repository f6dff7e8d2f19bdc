"""ANTISPOOFING / CHECKSENDER: local senders must authenticate (or POP/IMAP first)."""

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
from indimail.policy.antispoof import AUTH_REQUIRED, AntiSpoofing
from indimail.policy.cugmail import LocalSenders, StoreSource
from indimail.policy.rcpthosts import RelayPolicy
from indimail.smtp.session import Session, Transaction
from indimail.testing import wait_for
from tests.integration.vdomain.helpers import mysql_backend, sqlite_backend
from tests.unit.policy.test_cugmail import START, populated_store
from tests.unit.smtp.support import Harness

IP = "192.0.2.9"


def context(env=None, sender="a@example.com", authenticated=None) -> HookContext:
    session = Session(env=Environment(env or {}), remote_ip=IP, authenticated=authenticated)
    clock = Clock()
    clock.advance(START)
    return HookContext(session, Transaction(sender), None, clock, Logger())


class SessionTest(SynchronousTestCase):
    """Through the SMTP protocol, without a store."""

    def mail(self, sender: str, env=None, relaymailfrom: str | None = None) -> str:
        h = Harness(self, env=env if env is not None else {"ANTISPOOFING": ""})
        if relaymailfrom is not None:
            Path(h.control.directory, "relaymailfrom").write_text(relaymailfrom)
        h.send(f"HELO client\r\nMAIL FROM:<{sender}>\r\n")
        return h.replies()[-1]

    def test_unauthenticated_local_sender_refused(self):
        """A local domain (in rcpthosts) as sender without AUTH: 530."""
        self.assertEqual(self.mail("ceo@example.com"),
                         "530 authentication required for local users (#5.7.1)")
        self.assertEqual(self.mail("ceo@x.sub.example.org"),
                         "530 authentication required for local users (#5.7.1)")

    def test_remote_and_null_senders_pass(self):
        """Foreign senders and bounces are not affected."""
        self.assertEqual(self.mail("someone@remote.example"), "250 ok")
        self.assertEqual(self.mail(""), "250 ok")

    def test_off_without_variable(self):
        """Without ANTISPOOFING a local sender needs no AUTH."""
        self.assertEqual(self.mail("ceo@example.com", env={}), "250 ok")

    def test_checksender_is_the_same_switch(self):
        """CHECKSENDER also forces local senders to authenticate."""
        self.assertEqual(self.mail("ceo@example.com", env={"CHECKSENDER": "1"}),
                         "530 authentication required for local users (#5.7.1)")

    def test_relay_clients_may_use_local_senders(self):
        """RELAYCLIENT (tcprules) lets the client send as a local user."""
        self.assertEqual(self.mail("ceo@example.com", env={"ANTISPOOFING": "",
                                                           "RELAYCLIENT": ""}), "250 ok")



class RelayMailFromTest(TestCase):

    async def test_relaymailfrom_grant_counts(self):
        """A sender that relaymailfrom lets relay is not refused (that plugin runs first)."""
        h = Harness(self, env={"ANTISPOOFING": ""})
        Path(h.control.directory, "relaymailfrom").write_text("ceo@example.com\n")
        h.send("HELO client\r\nMAIL FROM:<ceo@example.com>\r\n")
        await wait_for(reactor, lambda: h.transport.value().count(b"\r\n") >= 3,
                       what="the MAIL reply")
        self.assertEqual(h.replies()[-1], "250 ok")


class PluginTest(SynchronousTestCase):

    def setUp(self):
        d = Path(self.mktemp())
        d.mkdir()
        (d / "rcpthosts").write_text("example.com\n")
        self.plugin = AntiSpoofing(RelayPolicy(ControlFiles(d)),
                                   LocalSenders(StoreSource(), None, passwd=False))

    def test_authenticated_session_passes(self):
        """An authenticated client may use a local sender."""
        result = self.successResultOf(self.plugin.hook_mail(
            context({"ANTISPOOFING": ""}, authenticated="ceo@example.com"), "ceo@example.com"))
        self.assertIsNone(result)

    def test_refusal(self):
        """Unauthenticated, no relay table: 530 with upstream's text."""
        result = self.successResultOf(self.plugin.hook_mail(context({"ANTISPOOFING": ""}),
                                                            "ceo@example.com"))
        self.assertEqual((result.verdict, result.code, result.text),
                         (Verdict.DENY, 530, AUTH_REQUIRED))


class StoreMixin:
    """POP-before-SMTP and CHECKSENDER's user check over a real store."""

    async def make(self):
        self.store = await populated_store(self, self.backend())
        d = Path(self.mktemp())
        d.mkdir()
        (d / "rcpthosts").write_text("example.com\n")
        self.plugin = AntiSpoofing(RelayPolicy(ControlFiles(d)),
                                   LocalSenders(StoreSource(store=self.store), None, reactor,
                                                passwd=False))

    async def test_pop_before_smtp_lets_local_sender_in_and_relay(self):
        """A fresh relay-table row for the IP counts as authentication and
        lets the session relay; an old one does not."""
        await self.make()
        await self.store.add_relay("alice@example.com", IP, START - 60)
        ctx = context({"ANTISPOOFING": ""})
        self.assertIsNone(await self.plugin.hook_mail(ctx, "alice@example.com"))
        self.assertTrue(ctx.session.notes.get("relay"))

    async def test_stale_relay_row_does_not_count(self):
        """A row older than RELAY_CLEAR_MINUTES is ignored: 530."""
        await self.make()
        await self.store.add_relay("alice@example.com", IP, START - 2 * 3600)
        result = await self.plugin.hook_mail(context({"ANTISPOOFING": ""}), "alice@example.com")
        self.assertEqual(result.code, 530)
        ctx = context({"ANTISPOOFING": "", "RELAY_CLEAR_MINUTES": "180"})
        self.assertIsNone(await self.plugin.hook_mail(ctx, "alice@example.com"))

    async def test_checksender_checks_the_user(self):
        """CHECKSENDER: even authenticated, the local sender must be an active
        user allowed SMTP (553 SMTP Access denied otherwise)."""
        await self.make()
        env = {"CHECKSENDER": ""}
        self.assertIsNone(await self.plugin.hook_mail(
            context(env, authenticated="alice@example.com"), "alice@example.com"))
        result = await self.plugin.hook_mail(context(env, authenticated="carol@example.com"),
                                             "carol@example.com")
        self.assertEqual((result.code, result.text), (553, "SMTP Access denied (#5.7.1)"))
        self.assertIsNone(await self.plugin.hook_mail(
            context({"ANTISPOOFING": ""}, authenticated="carol@example.com"),
            "carol@example.com"))


class SqliteAntiSpoofTest(StoreMixin, TestCase):
    def backend(self):
        return sqlite_backend(self)


class MariaDBAntiSpoofTest(StoreMixin, TestCase):
    def backend(self):
        return mysql_backend(self)
