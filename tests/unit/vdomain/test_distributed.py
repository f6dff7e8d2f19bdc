"""RoutedStore: users of an mcdinfo domain live on the database upstream's
findmdahost picks (hostcntrl -> host_table -> the record's mdahost), each
database with its own pool; other domains stay on the central database.

Three databases on the local MariaDB stand for the central server and two
mail stores' servers: the router keys on server, port and database."""

import uuid

import pymysql
from twisted.internet import defer, threads
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.home import Home
from indimail.vdomain.backend import (McdEntry, SqliteBackend, database_key, format_mcdinfo,
                                      load_mcdinfo, mcdinfo_path, parse_host_mysql)
from indimail.vdomain.distributed import RoutedStore
from indimail.vdomain.records import VUser
from indimail.vdomain.store import StoreError, UserExists, open_store

from tests.integration.vdomain.helpers import MYSQL, run_sql

MCD_USER, MCD_PASS = "indimail_mcd", "ssh-1.5-"


def grant_mcd_user() -> None:
    """Blocking: a MariaDB account mcdinfo can name (mcdinfo needs a password)
    allowed on the ``indimail_mcd_*`` test databases."""
    root = parse_host_mysql(MYSQL, {"MYSQL_PASSWD": ""})
    statements = []
    for host in ("127.0.0.1", "localhost"):
        statements += [f"CREATE USER IF NOT EXISTS '{MCD_USER}'@'{host}' IDENTIFIED BY '{MCD_PASS}'",
                       f"GRANT ALL ON `indimail\\_mcd\\_%`.* TO '{MCD_USER}'@'{host}'"]
    run_sql(root, statements, with_database=False)


def mcd_databases(case, count: int) -> list[str]:
    """*count* fresh database names, dropped at cleanup."""
    names = [f"indimail_mcd_{uuid.uuid4().hex[:12]}" for _ in range(count)]

    def drop():
        root = parse_host_mysql(MYSQL, {"MYSQL_PASSWD": ""})
        run_sql(root, [f"DROP DATABASE IF EXISTS {n}" for n in names], with_database=False)
    case.addCleanup(lambda: threads.deferToThread(drop))
    return names


def mcd_entry(domain: str, database: str, mdahost: str, distributed: int = 1) -> McdEntry:
    root = parse_host_mysql(MYSQL, {"MYSQL_PASSWD": ""})
    return McdEntry(domain, distributed, root.host, mdahost, root.port, False, database,
                    MCD_USER, MCD_PASS)


def central_backend(database: str):
    return parse_host_mysql(f"{parse_host_mysql(MYSQL).host}:{MCD_USER}:{MCD_PASS}:"
                            f"{parse_host_mysql(MYSQL).port}", {"MYSQL_DATABASE": database})


def rows_in(database: str, table: str = "indimail") -> list[tuple]:
    """Blocking: (pw_name, pw_domain) of *table* in *database*."""
    backend = central_backend(database)
    try:
        return sorted(run_sql(backend, [f"SELECT pw_name, pw_domain FROM {table}"]))
    except pymysql.MySQLError as exc:   # no such database/table: never used
        if exc.args and exc.args[0] in (1049, 1146):
            return []
        raise


def user(name: str, domain: str = "dist.test") -> VUser:
    return VUser(name, domain, "$6$salt$hash", 1, 0, name.title(),
                 f"/home/mail/{domain}/{name}", "NOQUOTA")


class RoutedStoreTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        yield threads.deferToThread(grant_mcd_user)
        self.central, self.db_a, self.db_b = mcd_databases(self, 3)
        self.entries = [mcd_entry("dist.test", self.db_a, "10.0.0.1"),
                        mcd_entry("dist.test", self.db_b, "10.0.0.2"),
                        mcd_entry("single.test", self.db_b, "10.0.0.2", distributed=0)]
        self.store = yield self.open_router(hostid="h1")
        yield self.store.set_host_ip("h1", "10.0.0.1")
        yield self.store.set_host_ip("h2", "10.0.0.2")
        yield self.store.add_domain("dist.test")
        yield self.store.add_alias_domain("alias.test", "dist.test")

    def open_router(self, hostid=None):
        store = RoutedStore(central_backend(self.central), entries=self.entries, hostid=hostid,
                            create_database=True)
        self.addCleanup(store.close)
        return store.open()

    def rows(self, database, table="indimail"):
        return threads.deferToThread(rows_in, database, table)

    @defer.inlineCallbacks
    def test_new_user_goes_to_this_hosts_database(self):
        """A new user of a distributed domain goes to the record of this node
        (HOSTID h1 -> host_table 10.0.0.1 -> database A) and hostcntrl names h1."""
        yield self.store.add_user(user("alice"))
        self.assertEqual((yield self.rows(self.db_a)), [("alice", "dist.test")])
        self.assertEqual((yield self.rows(self.db_b)), [])
        self.assertEqual((yield self.rows(self.central)), [])
        self.assertEqual((yield self.store.mailstore("alice", "dist.test")), "h1")

    @defer.inlineCallbacks
    def test_mdahost_places_user_and_hostcntrl_names_its_host(self):
        """add_user(mdahost=...) uses that record; hostcntrl gets the host_table
        host of that address (upstream sql_gethostid)."""
        yield self.store.add_user(user("bob"), mdahost="10.0.0.2")
        self.assertEqual((yield self.rows(self.db_b)), [("bob", "dist.test")])
        self.assertEqual((yield self.store.mailstore("bob", "dist.test")), "h2")
        with self.assertRaises(StoreError):
            yield self.store.add_user(user("carol"), mdahost="10.9.9.9")

    @defer.inlineCallbacks
    def test_without_hostid_first_record(self):
        """A node without a host id puts new users on the domain's first record."""
        other = yield self.open_router(hostid=None)
        yield other.add_user(user("dave"))
        self.assertEqual((yield self.rows(self.db_a)), [("dave", "dist.test")])
        self.assertEqual((yield other.mailstore("dave", "dist.test")), "h1")

    @defer.inlineCallbacks
    def test_lookups_find_each_user_in_its_database(self):
        """get_user/lookup (also through an alias domain) read the database
        hostcntrl points at; a user whose row sits elsewhere is not found."""
        yield self.store.add_user(user("alice"))
        yield self.store.add_user(user("bob"), mdahost="10.0.0.2")
        self.assertEqual((yield self.store.get_user("alice", "dist.test")).pw_gecos, "Alice")
        self.assertEqual((yield self.store.lookup("bob@dist.test")).pw_gecos, "Bob")
        self.assertEqual((yield self.store.lookup("bob@alias.test")).pw_name, "bob")
        self.assertIsNone((yield self.store.get_user("nobody", "dist.test")))
        # hostcntrl moved to h2 while the row stays in A: upstream does not find her
        yield self.store.set_mailstore("alice", "dist.test", "h2")
        self.assertIsNone((yield self.store.get_user("alice", "dist.test")))
        # a host outside mcdinfo (a foreign mail server) holds no row here
        yield self.store.set_mailstore("alice", "dist.test", "exchange")
        self.assertIsNone((yield self.store.get_user("alice", "dist.test")))

    @defer.inlineCallbacks
    def test_writes_go_to_the_users_database(self):
        """update, inactivate, rename and delete change the row in the user's
        database; delete also drops the hostcntrl row."""
        yield self.store.add_user(user("bob"), mdahost="10.0.0.2")
        bob = yield self.store.get_user("bob", "dist.test")
        self.assertTrue((yield self.store.update_user(bob.with_(pw_gecos="Robert"))))
        self.assertEqual((yield self.store.get_user("bob", "dist.test")).pw_gecos, "Robert")
        self.assertTrue((yield self.store.set_inactive("bob", "dist.test", True)))
        self.assertEqual((yield self.rows(self.db_b, "indibak")), [("bob", "dist.test")])
        self.assertTrue((yield self.store.get_user("bob", "dist.test")).inactive)
        yield self.store.set_inactive("bob", "dist.test", False)
        bob = yield self.store.get_user("bob", "dist.test")
        yield self.store.rename_user(bob, bob.with_(pw_name="rob"))
        self.assertEqual((yield self.rows(self.db_b)), [("rob", "dist.test")])
        self.assertEqual((yield self.store.mailstore("rob", "dist.test")), "h2")
        self.assertTrue((yield self.store.delete_user("rob", "dist.test")))
        self.assertEqual((yield self.rows(self.db_b)), [])
        self.assertIsNone((yield self.store.mailstore("rob", "dist.test")))

    @defer.inlineCallbacks
    def test_duplicate_user_refused(self):
        """A user hostcntrl knows already cannot be added again, on any record."""
        yield self.store.add_user(user("alice"))
        with self.assertRaises(UserExists):
            yield self.store.add_user(user("alice"), mdahost="10.0.0.2")

    @defer.inlineCallbacks
    def test_listing_and_counting_span_the_databases(self):
        """list_users/count_users of a distributed domain join all its databases."""
        yield self.store.add_user(user("bob"), mdahost="10.0.0.2")
        yield self.store.add_user(user("alice"))
        names = [u.pw_name for u in (yield self.store.list_users("dist.test"))]
        self.assertEqual(names, ["alice", "bob"])
        self.assertEqual((yield self.store.count_users("dist.test")), 2)

    @defer.inlineCallbacks
    def test_one_pool_per_database(self):
        """Two records on one server but different databases get two pools."""
        yield self.store.add_user(user("alice"))
        yield self.store.add_user(user("bob"), mdahost="10.0.0.2")
        keys = sorted(self.store._stores)
        self.assertEqual([k[2] for k in keys], sorted([self.db_a, self.db_b]))
        pools = {id(s.pool) for s in self.store._stores.values()}
        self.assertEqual(len(pools), 2)
        self.assertNotIn(id(self.store.pool), pools)

    @defer.inlineCallbacks
    def test_non_distributed_and_plain_domains(self):
        """A record with distributed 0 holds its domain's users without
        hostcntrl; a domain mcdinfo does not name stays on the central database."""
        yield self.store.add_user(user("erin", "single.test"))
        self.assertEqual((yield self.rows(self.db_b)), [("erin", "single.test")])
        self.assertIsNone((yield self.store.mailstore("erin", "single.test")))
        self.assertEqual((yield self.store.get_user("erin", "single.test")).pw_name, "erin")
        yield self.store.add_domain("plain.test")
        yield self.store.add_user(user("fred", "plain.test"))
        self.assertEqual((yield self.rows(self.central)), [("fred", "plain.test")])
        self.assertEqual((yield self.store.get_user("fred", "plain.test")).pw_name, "fred")
        self.assertTrue(self.store.is_distributed("dist.test"))
        self.assertFalse(self.store.is_distributed("single.test"))
        self.assertFalse(self.store.is_distributed("plain.test"))


class McdinfoFileTests(SynchronousTestCase):
    def test_mcdinfo_path(self):
        """mcdinfo is control/mcdinfo; MCDFILE names another file in the control
        directory, or a path when it starts with / or ."""
        home = Home(Path("/h"))
        self.assertEqual(mcdinfo_path(home), Path("/h/control/mcdinfo"))
        self.assertEqual(mcdinfo_path(home, {"MCDFILE": "mcd2"}), Path("/h/control/mcd2"))
        self.assertEqual(mcdinfo_path(home, {"MCDFILE": "/etc/mcd"}), Path("/etc/mcd"))

    def test_load_mcdinfo(self):
        """A missing file lists no databases; a present one is parsed."""
        home = Home(Path(self.mktemp()))
        self.assertEqual(load_mcdinfo(home), [])
        home.control.mkdir(parents=True)
        entry = mcd_entry("a.test", "db", "10.0.0.1")
        (home.control / "mcdinfo").write_text(format_mcdinfo([entry]))
        self.assertEqual(load_mcdinfo(home), [entry])

    def test_database_key(self):
        """Two records differ by server, port or database; a socket stands for the server."""
        a = mcd_entry("a.test", "db1", "10.0.0.1")
        self.assertNotEqual(a.key, mcd_entry("a.test", "db2", "10.0.0.1").key)
        self.assertEqual(a.key, mcd_entry("b.test", "db1", "10.0.0.9").key)
        sock = McdEntry("a.test", 1, "/run/mysqld.sock", "x", 0, False, "db1", "u", "p")
        self.assertEqual(sock.key, ("/run/mysqld.sock", 0, "db1"))
        self.assertEqual(database_key(SqliteBackend("/h/x.db")), ("sqlite", "/h/x.db"))


class HomeStoreTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_open_store_routes_by_the_homes_mcdinfo(self):
        """open_store reads control/mcdinfo and control/hostid: with the central
        store on SQLite, a new user of the distributed domain goes to this
        node's MariaDB database and is found there."""
        yield threads.deferToThread(grant_mcd_user)
        (db_a,) = mcd_databases(self, 1)
        home = Home(Path(self.mktemp()).absolute())
        home.control.mkdir(parents=True)
        (home.control / "mcdinfo").write_text(format_mcdinfo([mcd_entry("d.test", db_a,
                                                                        "10.0.0.1")]))
        (home.control / "hostid").write_text("h1\n")
        setup = RoutedStore(SqliteBackend(str(home.domains / "indimail.db")), entries=[])
        yield setup.open()
        yield setup.set_host_ip("h1", "10.0.0.1")
        setup.close()
        store = yield open_store(home, {})
        self.addCleanup(store.close)
        self.assertIsInstance(store, RoutedStore)
        self.assertEqual(store.hostid, "h1")
        # the tables of a database named by mcdinfo are created on first use
        yield threads.deferToThread(run_sql, parse_host_mysql(MYSQL, {"MYSQL_PASSWD": ""}),
                                    [f"CREATE DATABASE {db_a}"], with_database=False)
        yield store.add_user(user("gina", "d.test"))
        self.assertEqual((yield threads.deferToThread(rows_in, db_a)), [("gina", "d.test")])
        self.assertEqual((yield store.get_user("gina", "d.test")).pw_name, "gina")
        self.assertEqual((yield store.mailstore("gina", "d.test")), "h1")
