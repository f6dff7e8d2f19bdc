"""POP-before-SMTP over the relay table, on SQLite and MariaDB."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.vdomain import relaytable
from indimail.vdomain.relaytable import (check_relay, clear_open_smtp, open_relay,
                                         relay_allowed, relay_clear_minutes, relay_ip)
from indimail.vdomain.store import VStore

from tests.integration.vdomain.helpers import mysql_backend, sqlite_backend

NOW = 1_700_000_000


class PureTests(SynchronousTestCase):
    def test_relay_ip_forms(self):
        """IPv4 is kept, IPv4-mapped IPv6 becomes IPv4, IPv6 too long for
        char(18) is not kept at all."""
        self.assertEqual(relay_ip("10.1.2.3"), "10.1.2.3")
        self.assertEqual(relay_ip("::ffff:10.1.2.3"), "10.1.2.3")
        self.assertEqual(relay_ip("::1"), "::1")
        self.assertIsNone(relay_ip("2001:db8:1234:5678::1"))
        self.assertIsNone(relay_ip(""))

    def test_relay_clear_minutes(self):
        """RELAY_CLEAR_MINUTES from the environment, else IndiMail's 60."""
        self.assertEqual(relay_clear_minutes({}), 60)
        self.assertEqual(relay_clear_minutes({"RELAY_CLEAR_MINUTES": "15"}), 15)
        self.assertEqual(relay_clear_minutes({"RELAY_CLEAR_MINUTES": "x"}), 60)


class RelayTestsMixin:
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.store = VStore(self.make_backend(), create_database=True)
        yield self.store.open()
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_login_opens_relay_for_its_minutes(self):
        """A recorded login lets its IP relay for RELAY_CLEAR_MINUTES, not after,
        and not another IP."""
        self.assertTrue((yield open_relay(self.store, "Bob@Example.org", "10.0.0.5", NOW)))
        self.assertTrue((yield relay_allowed(self.store, "10.0.0.5", NOW + 59 * 60)))
        self.assertFalse((yield relay_allowed(self.store, "10.0.0.5", NOW + 61 * 60)))
        self.assertFalse((yield relay_allowed(self.store, "10.0.0.6", NOW)))
        env = {"RELAY_CLEAR_MINUTES": "5"}
        self.assertFalse((yield relay_allowed(self.store, "10.0.0.5", NOW + 6 * 60, env)))
        self.assertTrue((yield relay_allowed(self.store, "::ffff:10.0.0.5", NOW, env)))

    @defer.inlineCallbacks
    def test_long_ipv6_is_not_recorded(self):
        """An address that does not fit ipaddr char(18) is neither stored nor allowed."""
        self.assertFalse((yield open_relay(self.store, "bob@example.org",
                                           "2001:db8:1234:5678::1", NOW)))
        self.assertFalse((yield relay_allowed(self.store, "2001:db8:1234:5678::1", NOW)))

    @defer.inlineCallbacks
    def test_check_relay_sets_relayclient(self):
        """Under CHECKRELAY an IP in the table gets RELAYCLIENT and AUTHENTICATED=1,
        another gets AUTHENTICATED=0; without CHECKRELAY nothing is asked."""
        yield open_relay(self.store, "bob@example.org", "10.0.0.5", NOW)
        self.assertEqual((yield check_relay(self.store, {"CHECKRELAY": ""}, "10.0.0.5", NOW)),
                         {"RELAYCLIENT": "", "AUTHENTICATED": "1"})
        self.assertEqual((yield check_relay(self.store, {"CHECKRELAY": ""}, "10.0.0.9", NOW)),
                         {"AUTHENTICATED": "0"})
        self.assertEqual((yield check_relay(self.store, {}, "10.0.0.5", NOW)), {})

    @defer.inlineCallbacks
    def test_clear_open_smtp(self):
        """clearopensmtp removes the rows older than RELAY_CLEAR_MINUTES only."""
        yield open_relay(self.store, "old@example.org", "10.0.0.1", NOW - 3600 * 2)
        yield open_relay(self.store, "new@example.org", "10.0.0.2", NOW - 60)
        self.assertEqual((yield clear_open_smtp(self.store, NOW)), 1)
        self.assertFalse((yield relay_allowed(self.store, "10.0.0.1", NOW - 3600 * 2 + 1)))
        self.assertTrue((yield relay_allowed(self.store, "10.0.0.2", NOW)))

    @defer.inlineCallbacks
    def test_relay_row_layout(self):
        """The row is IndiMail's: email lower-cased, ipaddr, timestamp in epoch seconds."""
        yield open_relay(self.store, "Bob@Example.org", "10.0.0.5", NOW)
        rows = yield self.store._query("SELECT email, ipaddr, timestamp FROM relay")
        self.assertEqual([tuple(r) for r in rows], [("bob@example.org", "10.0.0.5", NOW)])
        self.assertEqual(relaytable.IPADDR_WIDTH, 18)


class SqliteRelayTests(RelayTestsMixin, TestCase):
    def make_backend(self):
        return sqlite_backend(self)


class MysqlRelayTests(RelayTestsMixin, TestCase):
    def make_backend(self):
        return mysql_backend(self)
