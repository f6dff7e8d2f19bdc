"""CUGMAIL: closed user group mailing, senders checked in the store (SQLite and MariaDB)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.plugins.api import Verdict
from indimail.plugins.context import HookContext
from indimail.policy.cugmail import (ACCESS_DENIED, CugMail, LocalSenders, Status,
                                     StoreSource)
from indimail.policy.rcpthosts import RelayPolicy
from indimail.smtp.session import Session, Transaction
from indimail.testing import wait_for
from indimail.vdomain.flags import NO_SMTP
from indimail.vdomain.records import VUser
from indimail.vdomain.store import VStore
from tests.integration.vdomain.helpers import mysql_backend, sqlite_backend
from tests.unit.smtp.support import Harness

START = 1700000000.0


def context(env=None, sender="a@example.com", ip="192.0.2.9", authenticated=None):
    session = Session(env=Environment(env or {}), remote_ip=ip, authenticated=authenticated)
    clock = Clock()
    clock.advance(START)
    return HookContext(session, Transaction(sender), None, clock, Logger())


async def populated_store(case, backend) -> VStore:
    """example.com with alice (active), bob (inactive), carol (NO_SMTP)."""
    store = VStore(backend, reactor=reactor, create_database=True)
    await store.open()
    case.addCleanup(store.close)
    await store.add_domain("example.com")
    await store.add_alias_domain("alias.example", "example.com")
    home = "/home/mail/example.com/"
    await store.add_user(VUser("alice", "example.com", "x", 1, 0, "", home + "alice"))
    await store.add_user(VUser("bob", "example.com", "x", 1, 0, "", home + "bob",
                               inactive=True))
    await store.add_user(VUser("carol", "example.com", "x", 1, NO_SMTP, "", home + "carol"))
    return store


class StoreMixin:
    """CUGMAIL over a real store; subclasses pick the backend."""

    async def make(self):
        self.store = await populated_store(self, self.backend())
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        (self.dir / "rcpthosts").write_text("example.com\nalias.example\nlocal.example\n")
        users = Path(self.mktemp())
        users.mkdir()
        (users / "assign").write_text("=dave:dave:1000:1000:/home/dave:::\n.\n")
        self.senders = LocalSenders(StoreSource(store=self.store), users, reactor,
                                    passwd=False)
        self.plugin = CugMail(RelayPolicy(ControlFiles(self.dir)), self.senders)

    async def test_status_from_store(self):
        """Store users: active, absent, inactive and NO_SMTP are told apart,
        alias domains included."""
        await self.make()
        status = self.senders.status
        self.assertEqual(await status("alice@example.com"), Status.OK)
        self.assertEqual(await status("Alice@Alias.Example"), Status.OK)
        self.assertEqual(await status("zed@example.com"), Status.ABSENT)
        self.assertEqual(await status("bob@example.com"), Status.INACTIVE)
        self.assertEqual(await status("carol@example.com"), Status.NO_SMTP)

    async def test_status_for_other_local_domains_uses_assign(self):
        """A domain that is not virtual: the local part must be in users/assign."""
        await self.make()
        self.assertEqual(await self.senders.status("dave@local.example"), Status.OK)
        self.assertEqual(await self.senders.status("erin@local.example"), Status.ABSENT)

    async def test_cugmail_off_accepts_anyone(self):
        """Without CUGMAIL the plugin has no opinion."""
        await self.make()
        self.assertIsNone(self.plugin.hook_mail(context(), "x@remote.example"))

    async def test_remote_sender_refused(self):
        """CUGMAIL: a sender outside rcpthosts gets 553 SMTP Access denied at once."""
        await self.make()
        result = self.plugin.hook_mail(context({"CUGMAIL": "1"}), "x@remote.example")
        self.assertEqual((result.verdict, result.code, result.text),
                         (Verdict.DENY, 553, ACCESS_DENIED))

    async def test_local_users_checked(self):
        """CUGMAIL: an active user passes; inactive and NO_SMTP users get 553."""
        await self.make()
        env = {"CUGMAIL": ""}
        self.assertIsNone(await self.plugin.hook_mail(context(env), "alice@example.com"))
        for sender in ("bob@example.com", "carol@example.com"):
            result = await self.plugin.hook_mail(context(env), sender)
            self.assertEqual((result.code, result.text), (553, ACCESS_DENIED))

    async def test_unknown_user_refused_after_five_seconds(self):
        """An unknown local sender is refused only after 5 s on the session clock."""
        await self.make()
        ctx = context({"CUGMAIL": ""})
        d = self.plugin.hook_mail(ctx, "zed@example.com")
        await wait_for(reactor, lambda: ctx.clock.getDelayedCalls(), what="the delay")
        self.assertFalse(d.called)
        ctx.clock.advance(4.9)
        self.assertFalse(d.called)
        ctx.clock.advance(0.1)
        result = await d
        self.assertEqual((result.code, result.text), (553, ACCESS_DENIED))

    async def test_store_failure_is_temporary(self):
        """A store that fails answers 451 database error."""
        await self.make()
        self.store.close()
        result = await self.plugin.hook_mail(context({"CUGMAIL": ""}), "alice@example.com")
        self.assertEqual((result.verdict, result.code, result.text),
                         (Verdict.DENYSOFT, 451,
                          "Requested action aborted: database error (#4.3.2)"))
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)


class SqliteCugMailTest(StoreMixin, TestCase):
    def backend(self):
        return sqlite_backend(self)


class MariaDBCugMailTest(StoreMixin, TestCase):
    def backend(self):
        return mysql_backend(self)


class StoreSourceTest(TestCase):

    def test_no_store_without_database(self):
        """A home without host.mysql, MYSQL_HOST or domains/indimail.db has no store."""
        class FakeHome:
            control = Path(self.mktemp())
            domains = Path(self.mktemp())
        source = StoreSource(FakeHome(), {}, reactor)
        self.assertFalse(source.configured())
        return defer.ensureDeferred(source.get()).addCallback(self.assertIsNone)

    async def test_home_store_opened_once(self):
        """A home with domains/indimail.db: its store is opened (shared) on first use."""
        from indimail.config.init import init_home
        from indimail.vdomain.backend import SqliteBackend
        from indimail.vdomain.credchecker import close_shared_stores
        home = init_home(Path(self.mktemp()).absolute(), env={}, hostname="mx.example.com")
        setup_store = VStore(SqliteBackend(str(home.domains / "indimail.db")), reactor=reactor,
                             create_database=True)
        await setup_store.open()
        await setup_store.add_domain("example.com")
        setup_store.close()
        self.addCleanup(close_shared_stores)
        source = StoreSource(home, {}, reactor)
        self.assertTrue(source.configured())
        store = await source.get()
        self.assertTrue(await store.has_domain("example.com"))
        self.assertIs(await source.get(), store)

    async def test_given_store_factory(self):
        """options["store"] may be a callable returning a Deferred of the store."""
        marker = object()
        source = StoreSource(store=lambda: defer.succeed(marker))
        self.assertIs(await source.get(), marker)
        self.assertIs(await source.get(), marker)


class ProtocolTest(SynchronousTestCase):

    def test_remote_sender_refused_in_session(self):
        """With CUGMAIL a MAIL FROM outside rcpthosts is 553 SMTP Access denied."""
        h = Harness(self, env={"CUGMAIL": "1"})
        h.send("HELO client\r\nMAIL FROM:<x@remote.example>\r\n")
        self.assertEqual(h.replies()[1:], ["553 SMTP Access denied (#5.7.1)"])


class SharedSourceTest(SynchronousTestCase):

    def test_plugins_of_one_service_share_the_store(self):
        """cugmail and antispoofing built from one PluginSetup open one store."""
        from indimail.plugins.api import PluginSetup
        from indimail.policy.antispoof import AntiSpoofing
        setup = PluginSetup(control=ControlFiles(self.mktemp()))
        self.assertIs(CugMail.from_setup(setup).senders.stores,
                      AntiSpoofing.from_setup(setup).senders.stores)


class RecipientsSourceTest(TestCase):

    async def test_recipients_extension_decides_when_present(self):
        """With control/recipients, a non-virtual local sender is looked up there
        (here a cdb) instead of users/assign."""
        from indimail.config.cdb import write_cdb
        from indimail.vdomain.recipients import RecipientRules
        base = Path(self.mktemp())
        (base / "control").mkdir(parents=True)
        (base / "users").mkdir()
        (base / "users" / "assign").write_text("=dave:dave:1000:1000:/home/dave:::\n.\n")
        control = ControlFiles(base / "control")
        senders = LocalSenders(StoreSource(), base / "users", reactor, passwd=False,
                               recipients=RecipientRules(control, base, reactor))
        self.assertEqual(await senders.status("dave@local.example"), Status.OK)
        write_cdb(base / "users" / "recipients.cdb", [(b":frank@local.example", b"")])
        (base / "control" / "recipients").write_text("@local.example:users/recipients.cdb\n")
        self.assertEqual(await senders.status("frank@local.example"), Status.OK)
        self.assertEqual(await senders.status("dave@local.example"), Status.ABSENT)
