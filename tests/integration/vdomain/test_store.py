"""The store's behaviour, run against SQLite and against MariaDB."""

from pathlib import Path

from twisted.internet import defer, threads
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.home import Home
from indimail.vdomain import flags
from indimail.vdomain.backend import parse_mcdinfo
from indimail.vdomain.records import VFilter, VLimits, VUser
from indimail.vdomain.sqlslot import SqlControlLookup
from indimail.vdomain.store import DomainExists, StoreError, UserExists, VStore, open_store

from .helpers import mysql_backend, sqlite_backend

NOW = 1_700_000_000


def alice(**changes):
    user = VUser("alice", "example.com", "$6$salt$hash", 1, 0, "Alice A",
                 "/home/mail/example.com/alice", "5242880,1000")
    return user.with_(**changes)


class OpenStoreMixin:
    """Opens a store on the backend a subclass's make_backend() chooses."""

    @defer.inlineCallbacks
    def setUp(self):
        self.backend = self.make_backend()
        self.store = VStore(self.backend, create_database=True)
        yield self.store.open()
        self.addCleanup(self.store.close)


class StoreTestsMixin(OpenStoreMixin):
    """The store interface; subclasses choose the backend with make_backend()."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.store.add_domain("example.com")

    # domains

    @defer.inlineCallbacks
    def test_domains_add_list_delete(self):
        """Domains are added once, listed sorted, and deleted with their users and aliases."""
        yield self.store.add_domain("Example.ORG")
        self.assertEqual((yield self.store.list_domains()), ["example.com", "example.org"])
        yield self.assertFailure(self.store.add_domain("example.org"), DomainExists)
        yield self.store.add_user(alice(pw_domain="example.org"))
        yield self.store.add_alias_line("info", "example.org", "&alice@example.org")
        self.assertTrue((yield self.store.delete_domain("example.org")))
        self.assertEqual((yield self.store.list_domains()), ["example.com"])
        self.assertIsNone((yield self.store.get_user("alice", "example.org")))
        self.assertEqual((yield self.store.alias_lines("info", "example.org")), [])
        self.assertFalse((yield self.store.delete_domain("example.org")))

    @defer.inlineCallbacks
    def test_alias_domains(self):
        """An alias domain resolves to its real domain; unknown names resolve to None."""
        yield self.store.add_alias_domain("example.net", "example.com")
        self.assertEqual((yield self.store.real_domain("EXAMPLE.net")), "example.com")
        self.assertEqual((yield self.store.real_domain("example.com")), "example.com")
        self.assertIsNone((yield self.store.real_domain("nowhere.test")))
        self.assertEqual((yield self.store.list_alias_domains("example.com")),
                         [("example.net", "example.com")])
        yield self.assertFailure(self.store.add_alias_domain("example.net", "example.com"),
                                 DomainExists)
        yield self.assertFailure(self.store.add_alias_domain("x.test", "nowhere.test"),
                                 StoreError)
        yield self.assertFailure(self.store.add_domain("example.net"), DomainExists)
        self.assertTrue((yield self.store.delete_alias_domain("example.net")))
        self.assertIsNone((yield self.store.real_domain("example.net")))

    @defer.inlineCallbacks
    def test_dir_control(self):
        """A new domain has a fresh dir_control row, which can be updated."""
        row = yield self.store.dir_control("example.com")
        self.assertEqual((row["cur_users"], row["level_max"], row["the_dir"]), (0, 3, ""))
        self.assertTrue((yield self.store.set_dir_control("example.com", cur_users=7,
                                                          the_dir="A/b")))
        row = yield self.store.dir_control("example.com")
        self.assertEqual((row["cur_users"], row["the_dir"]), (7, "A/b"))
        self.assertIsNone((yield self.store.dir_control("nowhere.test")))
        self.assertFalse((yield self.store.set_dir_control("nowhere.test", cur_users=1)))
        yield self.assertFailure(self.store.set_dir_control("example.com", pw_name="x"),
                                 StoreError)

    # users

    @defer.inlineCallbacks
    def test_add_and_get_user(self):
        """A user reads back with every field; names and domains are lower-cased."""
        yield self.store.add_user(alice(pw_name="Alice", pw_domain="Example.COM"))
        user = yield self.store.get_user("ALICE", "example.com")
        self.assertEqual(user, alice())
        self.assertFalse(user.inactive)
        self.assertEqual(user.quota.size, 5242880)
        self.assertIsNone((yield self.store.get_user("bob", "example.com")))

    @defer.inlineCallbacks
    def test_concurrent_lookups_share_queries(self):
        """Lookups asked together come back right (active, inactive, absent, two
        domains) from one batched read: the batch leaves at the end of the turn."""
        yield self.store.add_domain("example.org")
        names = [f"user{i}" for i in range(12)]
        for name in names:
            yield self.store.add_user(alice(pw_name=name, pw_dir=f"/home/mail/{name}"))
        yield self.store.add_user(alice(pw_name="carol", pw_domain="example.org"))
        yield self.store.set_inactive("user3", "example.com", True)
        trips = []
        fetch = self.store._user_reads.fetch_many
        self.store._user_reads.fetch_many = lambda keys: trips.append(keys) or fetch(keys)
        asked = [("USER1", "example.com"), ("user3", "Example.com"), ("ghost", "example.com"),
                 ("carol", "example.org"), ("user1", "example.org"), *((n, "example.com") for n in names)]
        users = yield defer.gatherResults([self.store.get_user(n, d) for n, d in asked])
        self.assertEqual(users[0], alice(pw_name="user1", pw_dir="/home/mail/user1"))
        self.assertTrue(users[1].inactive)
        self.assertIsNone(users[2])
        self.assertEqual(users[3].address, "carol@example.org")
        self.assertIsNone(users[4])
        self.assertEqual([u.pw_name for u in users[5:]], names)
        # asked in one reactor turn: one batch for all of them
        self.assertEqual(len(trips), 1)
        self.assertEqual(len(trips[0]), len(set((n.lower(), d.lower()) for n, d in asked)))

    @defer.inlineCallbacks
    def test_lookup_through_alias_domain(self):
        """lookup() finds user@aliasdomain as the user of the real domain."""
        yield self.store.add_user(alice())
        yield self.store.add_alias_domain("example.net", "example.com")
        self.assertEqual((yield self.store.lookup("Alice@Example.NET")), alice())
        self.assertEqual((yield self.store.lookup("alice@example.com")), alice())
        self.assertIsNone((yield self.store.lookup("alice@nowhere.test")))
        self.assertIsNone((yield self.store.lookup("bob@example.com")))
        self.assertIsNone((yield self.store.lookup("no-at-sign")))

    @defer.inlineCallbacks
    def test_add_existing_user(self):
        """Adding a user twice fails with UserExists, also when the first is inactive."""
        yield self.store.add_user(alice())
        yield self.assertFailure(self.store.add_user(alice()), UserExists)
        yield self.store.add_user(alice(pw_name="bob", inactive=True))
        yield self.assertFailure(self.store.add_user(alice(pw_name="bob")), UserExists)

    @defer.inlineCallbacks
    def test_update_user(self):
        """update_user rewrites password, flags, gecos, home and quota."""
        yield self.store.add_user(alice())
        changed = alice(pw_passwd="new", pw_gid=flags.NO_POP | flags.NO_RELAY,
                        pw_gecos="Alice B", pw_shell="NOQUOTA")
        self.assertTrue((yield self.store.update_user(changed)))
        user = yield self.store.get_user("alice", "example.com")
        self.assertEqual(user, changed)
        self.assertTrue(user.has(flags.NO_RELAY))
        self.assertFalse((yield self.store.update_user(alice(pw_name="ghost"))))

    @defer.inlineCallbacks
    def test_inactive_moves_to_indibak(self):
        """Deactivating moves the row to indibak and back; the user stays findable."""
        yield self.store.add_user(alice())
        self.assertTrue((yield self.store.set_inactive("alice", "example.com", True)))
        user = yield self.store.get_user("alice", "example.com")
        self.assertTrue(user.inactive)
        self.assertEqual(user.pw_passwd, alice().pw_passwd)
        rows = yield self.store._query("SELECT pw_name FROM indimail")
        self.assertEqual(list(rows), [])
        rows = yield self.store._query("SELECT pw_name FROM indibak")
        self.assertEqual([r[0] for r in rows], ["alice"])
        self.assertTrue((yield self.store.set_inactive("alice", "example.com", False)))
        self.assertFalse((yield self.store.get_user("alice", "example.com")).inactive)
        self.assertFalse((yield self.store.set_inactive("ghost", "example.com", True)))

    @defer.inlineCallbacks
    def test_list_count_delete_users(self):
        """Users are listed per domain (active then inactive), counted and deleted."""
        yield self.store.add_domain("example.org")
        yield self.store.add_user(alice(pw_name="carol"))
        yield self.store.add_user(alice(pw_name="bob", inactive=True))
        yield self.store.add_user(alice())
        yield self.store.add_user(alice(pw_domain="example.org"))
        users = yield self.store.list_users("example.com")
        self.assertEqual([(u.pw_name, u.inactive) for u in users],
                         [("alice", False), ("carol", False), ("bob", True)])
        self.assertEqual((yield self.store.count_users("example.com")), 3)
        self.assertTrue((yield self.store.delete_user("bob", "example.com")))
        self.assertFalse((yield self.store.delete_user("bob", "example.com")))
        self.assertEqual((yield self.store.count_users("example.com")), 2)
        self.assertEqual((yield self.store.count_users("example.org")), 1)

    # cluster tables

    @defer.inlineCallbacks
    def test_cluster_lookups(self):
        """hostcntrl names a user's mail store, host_table its IP, smtp_port its port
        (the source host's row, else the * row, else the default)."""
        yield self.store.set_mailstore("alice", "example.com", "store2")
        self.assertEqual((yield self.store.mailstore("alice", "Example.com")), "store2")
        yield self.store.set_mailstore("alice", "example.com", "store3")
        self.assertEqual((yield self.store.mailstore("alice", "example.com")), "store3")
        self.assertIsNone((yield self.store.mailstore("bob", "example.com")))
        yield self.store.set_host_ip("store3", "10.0.0.3")
        self.assertEqual((yield self.store.host_ip("store3")), "10.0.0.3")
        self.assertIsNone((yield self.store.host_ip("store9")))
        self.assertEqual((yield self.store.smtp_port("store3", "relay1", "example.com")), 25)
        yield self.store.set_smtp_port("store3", "relay1", "example.com", 2525)
        self.assertEqual((yield self.store.smtp_port("store3", "relay1", "example.com")), 2525)
        self.assertEqual((yield self.store.smtp_port("store3", "relay2", "example.com")), 25)
        yield self.store.set_smtp_port("store3", "*", "example.com", 587)
        self.assertEqual((yield self.store.smtp_port("store3", "relay2", "example.com")), 587)
        self.assertEqual((yield self.store.smtp_port("store3", "relay1", "example.com")), 2525)
        self.assertEqual((yield self.store.smtp_port("store3", "relay1", "other.test", 209)), 209)
        self.assertTrue((yield self.store.delete_mailstore("alice", "example.com")))
        self.assertIsNone((yield self.store.mailstore("alice", "example.com")))

    @defer.inlineCallbacks
    def test_ip_alias_map(self):
        """ip_domain reads ip_alias_map."""
        yield self.store._operation("INSERT INTO ip_alias_map (ipaddr, domain) VALUES (%s, %s)",
                                    "192.0.2.1", "example.com")
        self.assertEqual((yield self.store.ip_domain("192.0.2.1")), "example.com")
        self.assertIsNone((yield self.store.ip_domain("192.0.2.2")))

    # relay

    @defer.inlineCallbacks
    def test_relay_window(self):
        """An IP may relay for RELAY_CLEAR_MINUTES after a login, then clearopensmtp drops it."""
        yield self.store.add_relay("alice@example.com", "192.0.2.7", NOW)
        self.assertTrue((yield self.store.relay_allowed("192.0.2.7", NOW + 60)))
        self.assertTrue((yield self.store.relay_allowed("192.0.2.7", NOW + 3600)))
        self.assertFalse((yield self.store.relay_allowed("192.0.2.7", NOW + 3601)))
        self.assertTrue((yield self.store.relay_allowed("192.0.2.7", NOW + 3601, minutes=120)))
        self.assertFalse((yield self.store.relay_allowed("192.0.2.8", NOW)))
        yield self.store.add_relay("alice@example.com", "192.0.2.7", NOW + 3000)
        self.assertTrue((yield self.store.relay_allowed("192.0.2.7", NOW + 3601)))
        self.assertEqual((yield self.store.clear_relay(NOW + 3000 + 3601)), 1)
        self.assertFalse((yield self.store.relay_allowed("192.0.2.7", NOW + 3000)))

    # valias

    @defer.inlineCallbacks
    def test_valias_lines(self):
        """An alias holds several distinct lines; they are listed and deleted one or all."""
        self.assertTrue((yield self.store.add_alias_line("info", "example.com", "&a@x.test")))
        self.assertTrue((yield self.store.add_alias_line("info", "example.com", "|/bin/prog")))
        self.assertFalse((yield self.store.add_alias_line("info", "example.com", "&a@x.test")))
        yield self.store.add_alias_line("sales", "example.com", "/home/sales/Maildir/")
        self.assertEqual((yield self.store.alias_lines("INFO", "example.com")),
                         ["&a@x.test", "|/bin/prog"])
        self.assertEqual((yield self.store.list_aliases("example.com")),
                         [("info", "&a@x.test"), ("info", "|/bin/prog"),
                          ("sales", "/home/sales/Maildir/")])
        self.assertEqual((yield self.store.delete_alias("info", "example.com", "|/bin/prog")), 1)
        self.assertEqual((yield self.store.delete_alias("sales", "example.com")), 1)
        self.assertEqual((yield self.store.list_aliases("example.com")),
                         [("info", "&a@x.test")])

    # vlimits

    @defer.inlineCallbacks
    def test_vlimits_defaults_and_set(self):
        """Without a row the limits are -1 (unlimited); a set row reads back."""
        limits = yield self.store.get_limits("example.com")
        self.assertEqual(limits, VLimits("example.com"))
        self.assertEqual(limits.maxpopaccounts, -1)
        self.assertFalse((yield self.store.has_limits("example.com")))
        wanted = VLimits("example.com", maxpopaccounts=100, defaultquota=10485760,
                         defaultmaxmsgcount=1000, disable_pop=1, perm_quota=3)
        yield self.store.set_limits(wanted)
        self.assertEqual((yield self.store.get_limits("example.com")), wanted)
        yield self.store.set_limits(wanted.__class__("example.com", maxaliases=5))
        self.assertEqual((yield self.store.get_limits("example.com")).maxaliases, 5)
        self.assertEqual((yield self.store.get_limits("example.com")).maxpopaccounts, -1)
        self.assertTrue((yield self.store.delete_limits("example.com")))
        self.assertFalse((yield self.store.has_limits("example.com")))

    # lastauth, userquota

    @defer.inlineCallbacks
    def test_lastauth(self):
        """The latest authentication per service is kept with its time and address."""
        yield self.store.record_auth("alice", "example.com", "pop3", "192.0.2.1", NOW)
        yield self.store.record_auth("alice", "example.com", "imap", "192.0.2.2", NOW + 10)
        yield self.store.record_auth("alice", "example.com", "pop3", "192.0.2.3", NOW + 20)
        self.assertEqual((yield self.store.last_auth("alice", "example.com", "pop3")),
                         (NOW + 20, "pop3", "192.0.2.3"))
        self.assertEqual((yield self.store.last_auth("alice", "example.com", "imap")),
                         (NOW + 10, "imap", "192.0.2.2"))
        self.assertEqual((yield self.store.last_auth("alice", "example.com")),
                         (NOW + 20, "pop3", "192.0.2.3"))
        self.assertIsNone((yield self.store.last_auth("bob", "example.com")))

    @defer.inlineCallbacks
    def test_userquota(self):
        """The recorded mailbox usage reads back and is replaced by a newer figure."""
        self.assertIsNone((yield self.store.usage("alice", "example.com")))
        yield self.store.set_usage("alice", "example.com", 12345, NOW)
        yield self.store.set_usage("alice", "example.com", 5_000_000_000, NOW + 1)
        self.assertEqual((yield self.store.usage("alice", "example.com")), 5_000_000_000)

    # vfilter

    @defer.inlineCallbacks
    def test_vfilter_rules(self):
        """Filter rules read back in filter_no order and are deleted with the user."""
        yield self.store.add_user(alice())
        second = VFilter("alice@example.com", 2, "lists", 3, 1, "list-id", "/Lists/")
        first = VFilter("alice@example.com", 1, "spam", 0, 1, "[SPAM]", "/Spam/",
                        "", 0)
        yield self.store.add_filter(second)
        yield self.store.add_filter(first)
        yield self.assertFailure(self.store.add_filter(first), StoreError)
        self.assertEqual((yield self.store.filters("alice@example.com")), [first, second])
        self.assertEqual((yield self.store.delete_filter("alice@example.com", 2)), 1)
        yield self.store.delete_user("alice", "example.com")
        self.assertEqual((yield self.store.filters("alice@example.com")), [])

    # control-file tables

    @defer.inlineCallbacks
    def test_control_tables(self):
        """badmailfrom-like tables are created on first use and answer contains()."""
        self.assertFalse((yield self.store.contains("badmailfrom", "spam@bad.test")))
        yield self.store.add_control_entry("badmailfrom", "Spam@Bad.test", NOW)
        yield self.store.add_control_entry("badmailfrom", "@worse.test", NOW)
        self.assertTrue((yield self.store.contains("badmailfrom", "SPAM@bad.test")))
        self.assertFalse((yield self.store.contains("badmailfrom", "ham@bad.test")))
        self.assertEqual((yield self.store.control_entries("badmailfrom")),
                         ["@worse.test", "spam@bad.test"])
        self.assertTrue((yield self.store.delete_control_entry("badmailfrom", "spam@bad.test")))
        self.assertFalse((yield self.store.contains("badmailfrom", "spam@bad.test")))
        yield self.assertFailure(self.store.contains("bad;table", "x"), ValueError)

    @defer.inlineCallbacks
    def test_sql_slot_of_control_files(self):
        """SqlControlLookup serves ControlFiles' sql slot when name.sql exists (in a thread)."""
        yield self.store.add_control_entry("badrcptto", "victim@example.com", NOW)
        control_dir = Path(self.mktemp())
        control_dir.mkdir()
        (control_dir / "badrcptto").write_text("text@example.com\n")
        lookup = SqlControlLookup(self.backend)
        self.addCleanup(lookup.close)
        control = ControlFiles(control_dir, sql_lookup=lookup)

        def check():
            text_only = control.contains("badrcptto", "text@example.com")
            (control_dir / "badrcptto.sql").write_text("\n")
            return (text_only, control.contains("badrcptto", "Victim@example.com"),
                    control.contains("badrcptto", "text@example.com"),
                    lookup("nosuchtable", "x"))
        result = yield threads.deferToThread(check)
        self.assertEqual(result, (True, True, False, False))

    @defer.inlineCallbacks
    def test_no_sql_on_reactor_thread(self):
        """Public store methods run every SQL statement in the pool's threads,
        never on the reactor thread (a tracing DB-API module records where)."""
        import dataclasses
        import importlib
        import sys
        import threading
        import types
        from twisted.internet import reactor
        reactor_thread = threading.current_thread()
        real = importlib.import_module(self.backend.module)
        seen = []

        class Cursor:
            def __init__(self, cursor):
                self._cursor = cursor

            def execute(self, *args, **kwargs):
                seen.append(threading.current_thread())
                return self._cursor.execute(*args, **kwargs)

            def __getattr__(self, name):
                return getattr(self._cursor, name)

        class Connection:
            def __init__(self, conn):
                self._conn = conn

            def cursor(self, *args, **kwargs):
                return Cursor(self._conn.cursor(*args, **kwargs))

            def __getattr__(self, name):
                return getattr(self._conn, name)

        name = "indimail_tracing_dbapi"
        module = types.ModuleType(name)
        module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        module.connect = lambda *a, **kw: Connection(real.connect(*a, **kw))
        sys.modules[name] = module
        self.addCleanup(sys.modules.pop, name, None)
        traced = type("Traced", (type(self.backend),), {"module": name})
        backend = traced(**{f.name: getattr(self.backend, f.name)
                            for f in dataclasses.fields(self.backend)})
        store = yield VStore(backend, reactor=reactor).open()
        self.addCleanup(store.close)
        yield store.add_domain("traced.example")
        yield store.add_user(alice(pw_domain="traced.example"))
        self.assertIsNotNone((yield store.get_user("alice", "traced.example")))
        yield store.list_domains()
        yield store.delete_user("alice", "traced.example")
        self.assertGreater(len(seen), 4)
        self.assertNotIn(reactor_thread, seen)


class SqliteStoreTests(StoreTestsMixin, TestCase):
    """The store on SQLite, the embedded default."""

    def make_backend(self):
        return sqlite_backend(self)

    @defer.inlineCallbacks
    def test_file_in_home_domains(self):
        """The SQLite file is created where the backend says (domains/indimail.db)."""
        import os
        self.assertTrue(os.path.exists(self.backend.path))
        self.assertTrue(self.backend.path.endswith(os.path.join("domains", "indimail.db")))
        yield self.store.add_user(alice())
        self.store.close()
        again = VStore(self.backend)
        yield again.open()
        self.addCleanup(again.close)
        self.assertEqual((yield again.get_user("alice", "example.com")), alice())


class MysqlStoreTests(StoreTestsMixin, TestCase):
    """The store on MariaDB, in a database of its own per test."""

    def make_backend(self):
        return mysql_backend(self)


class MoreTablesMixin(OpenStoreMixin):
    """dbinfo, atrn_map, vpriv and mgmtaccess."""

    @defer.inlineCallbacks
    def test_dbinfo_sync(self):
        """mcdinfo records stored in dbinfo read back; a new sync replaces the file's rows."""
        text = ("domain a.test 1\nserver 10.0.0.1\nmdahost 10.0.0.2\nport 3306\nuse_ssl 1\n"
                "database indimail\nuser indimail\npass secret\n")
        entries = parse_mcdinfo(text)
        yield self.store.set_dbinfo("/c/mcdinfo", entries, NOW)
        self.assertEqual((yield self.store.dbinfo("/c/mcdinfo")), entries)
        yield self.store.set_dbinfo("/c/mcdinfo", [], NOW)
        self.assertEqual((yield self.store.dbinfo()), [])

    @defer.inlineCallbacks
    def test_atrn_map(self):
        """A user may pull several domains with ATRN; rows are listed and deleted."""
        yield self.store.add_atrn("alice", "example.com", "a.test")
        yield self.store.add_atrn("alice", "example.com", "b.test")
        yield self.store.add_atrn("alice", "example.com", "a.test")
        self.assertEqual((yield self.store.atrn_domains("alice", "example.com")),
                         ["a.test", "b.test"])
        self.assertEqual((yield self.store.delete_atrn("alice", "example.com", "a.test")), 1)
        self.assertEqual((yield self.store.delete_atrn("alice", "example.com")), 1)

    @defer.inlineCallbacks
    def test_vpriv_and_mgmtaccess(self):
        """Admin privileges per program and admin passwords are kept."""
        yield self.store.set_privilege("admin", "vadduser", "-q -d")
        yield self.store.set_privilege("admin", "vdeluser", "")
        self.assertEqual((yield self.store.privileges("admin")),
                         {"vadduser": "-q -d", "vdeluser": ""})
        self.assertEqual((yield self.store.delete_privilege("admin", "vdeluser")), 1)
        self.assertIsNone((yield self.store.admin_password("admin")))
        yield self.store.set_admin("admin", "$6$x$y", NOW)
        self.assertEqual((yield self.store.admin_password("admin")), "$6$x$y")


class SqliteMoreTablesTests(MoreTablesMixin, TestCase):
    """More tables on SQLite."""

    def make_backend(self):
        return sqlite_backend(self)


class MysqlMoreTablesTests(MoreTablesMixin, TestCase):
    """More tables on MariaDB."""

    def make_backend(self):
        return mysql_backend(self)


class OpenStoreTests(TestCase):
    """open_store picks the backend of the home."""

    @defer.inlineCallbacks
    def test_sqlite_default(self):
        """A home without host.mysql gets its SQLite file in domains/."""
        home = Home(Path(self.mktemp()))
        home.control.mkdir(parents=True)
        store = yield open_store(home, {})
        self.addCleanup(store.close)
        yield store.add_domain("example.com")
        self.assertTrue((home.domains / "indimail.db").exists())


class MysqlPoolTests(TestCase):
    """Pool sizing and failures of the MySQL backend."""

    @defer.inlineCallbacks
    def test_pool_max(self):
        """pool_max sizes the MySQL connection pool (for many concurrent sessions)."""
        store = VStore(mysql_backend(self), create_database=True, pool_max=12)
        yield store.open()
        self.addCleanup(store.close)
        self.assertEqual(store.pool.max, 12)

    @defer.inlineCallbacks
    def test_unreachable_server(self):
        """An unreachable server fails open() with the driver's error; nothing is left running."""
        import pymysql
        from indimail.vdomain.backend import MysqlBackend
        store = VStore(MysqlBackend("127.0.0.1", "root", "", 1, database="indimail_none"))
        yield self.assertFailure(store.open(), pymysql.err.OperationalError)
        self.assertIsNone(store.pool)
