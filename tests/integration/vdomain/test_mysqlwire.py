"""The reactor-side MySQL reads against the MariaDB server, and the store's use of them."""

import uuid

import pymysql
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from indimail.vdomain.mysqlwire import ServerError, WireError, WireReads
from indimail.vdomain.records import VUser
from indimail.vdomain.store import VStore

from .helpers import mysql_backend, run_sql

AWKWARD = ["plain", "it's", 'say "hi"', "back\\slash", "nul\0byte", "line\nbreak\r\x1a",
           "é😀", "%s", ""]


def pymysql_rows(backend, sql, args):
    """Blocking: the rows PyMySQL gets for the same query, as text."""
    conn = backend.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return [tuple(None if v is None else str(v) for v in row) for row in cur.fetchall()]
    finally:
        conn.close()


class WireReadsTests(unittest.TestCase):

    def setUp(self):
        self.backend = mysql_backend(self)
        run_sql(self.backend, [f"CREATE DATABASE {self.backend.database}"], with_database=False)
        run_sql(self.backend, ["CREATE TABLE t (k varchar(64) NOT NULL PRIMARY KEY, n int NULL)"])
        self.reads = WireReads(self.backend, reactor)
        self.addCleanup(self.reads.close)

    @defer.inlineCallbacks
    def test_rows_and_escaping_match_pymysql(self):
        run_sql(self.backend, [("INSERT INTO t VALUES (%s, %s)", (value, i if i % 2 else None))
                               for i, value in enumerate(AWKWARD)])
        for value in AWKWARD:
            sql = "SELECT k, n, %s FROM t WHERE k = %s"
            rows = yield self.reads.query(sql, [value, value])
            expected = yield threads.deferToThread(pymysql_rows, self.backend, sql, [value, value])
            self.assertEqual(rows, expected)
            self.assertEqual(len(rows), 1, value)
            self.assertEqual(rows[0][0], value)

    @defer.inlineCallbacks
    def test_no_backslash_escapes_mode_is_followed(self):
        yield self.reads.query("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
        rows = yield self.reads.query("SELECT %s, %s, @@session.sql_mode", ["a\\b", "it's"])
        self.assertEqual(rows[0][:2], ("a\\b", "it's"))
        self.assertIn("NO_BACKSLASH_ESCAPES", rows[0][2])

    @defer.inlineCallbacks
    def test_server_error_carries_its_code_and_the_connection_stays_usable(self):
        with self.assertRaises(ServerError) as caught:
            yield self.reads.query("SELECT * FROM no_such_table")
        self.assertEqual(caught.exception.code, 1146)
        self.assertEqual((yield self.reads.query("SELECT 1 + 1")), [("2",)])

    @defer.inlineCallbacks
    def test_statement_without_rows_and_empty_result(self):
        self.assertEqual((yield self.reads.query("DO 1")), [])
        self.assertEqual((yield self.reads.query("SELECT k FROM t WHERE 0")), [])

    @defer.inlineCallbacks
    def test_concurrent_queries_share_the_connections(self):
        results = yield defer.gatherResults(
            [self.reads.query("SELECT SLEEP(0.05), %s", [i]) for i in range(6)])
        self.assertEqual([r[0][1] for r in results], [str(i) for i in range(6)])
        self.assertLessEqual(len(self.reads._all), self.reads.size)

    @defer.inlineCallbacks
    def test_a_killed_connection_is_replaced(self):
        [(conn_id,)] = yield self.reads.query("SELECT CONNECTION_ID()")
        yield threads.deferToThread(run_sql, self.backend, [f"KILL {conn_id}"])
        for _ in range(50):     # the server's close arrives
            if all(c.closed for c in self.reads._all):
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        [(new_id,)] = yield self.reads.query("SELECT CONNECTION_ID()")
        self.assertNotEqual(new_id, conn_id)

    @defer.inlineCallbacks
    def test_slow_query_times_out_and_drops_its_connection(self):
        self.reads.query_timeout = 0.2
        with self.assertRaises(WireError):
            yield self.reads.query("SELECT SLEEP(3)")
        self.assertEqual((yield self.reads.query("SELECT 7")), [("7",)])

    @defer.inlineCallbacks
    def test_password_authentication(self):
        user, password = "iw_" + uuid.uuid4().hex[:10], "s3cr'et"
        yield threads.deferToThread(run_sql, self.backend, [
            (f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,)),
            f"GRANT SELECT ON {self.backend.database}.* TO '{user}'@'127.0.0.1'"])
        self.addCleanup(lambda: threads.deferToThread(
            run_sql, self.backend, [f"DROP USER '{user}'@'127.0.0.1'"]))
        good = WireReads(_as(self.backend, user, password), reactor)
        self.addCleanup(good.close)
        self.assertEqual((yield good.query("SELECT CURRENT_USER()")), [(f"{user}@127.0.0.1",)])
        bad = WireReads(_as(self.backend, user, "wrong"), reactor)
        self.addCleanup(bad.close)
        with self.assertRaises(ServerError) as caught:
            yield bad.query("SELECT 1")
        self.assertEqual(caught.exception.code, 1045)

    @defer.inlineCallbacks
    def test_unreachable_server_is_a_wire_error(self):
        self.reads.backend = _as(self.backend, port=1)
        with self.assertRaises(WireError):
            yield self.reads.query("SELECT 1")

    @defer.inlineCallbacks
    def test_silent_server_times_out_and_leaves_no_connection(self):
        from twisted.internet import protocol
        silent = protocol.ServerFactory.forProtocol(protocol.Protocol)
        port = reactor.listenTCP(0, silent, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reads = WireReads(_as(self.backend, port=port.getHost().port), reactor,
                          connect_timeout=0.2)
        self.addCleanup(reads.close)
        with self.assertRaises(WireError):
            yield reads.query("SELECT 1")
        self.assertTrue(reads.usable)     # a timeout is no reason to stop trying
        self.assertFalse(reads._all)

    @defer.inlineCallbacks
    def test_close_waits_for_the_connections(self):
        yield defer.gatherResults([self.reads.query("SELECT SLEEP(0.01)") for _ in range(2)])
        conns = list(self.reads._all)
        self.assertTrue(conns)
        yield self.reads.close()
        self.assertTrue(all(c.gone for c in conns))
        with self.assertRaises(WireError):
            yield self.reads.query("SELECT 1")


def _as(backend, user=None, password=None, port=None):
    from dataclasses import replace
    changes = {k: v for k, v in (("user", user), ("password", password), ("port", port))
               if v is not None}
    return replace(backend, **changes)


class StoreReactorReadsTests(unittest.TestCase):
    """A service's store answers user lookups over the wire, the same as through threads."""

    @defer.inlineCallbacks
    def setUp(self):
        backend = mysql_backend(self)
        self.plain = VStore(backend, reactor=reactor, create_database=True)
        yield self.plain.open()
        self.addCleanup(self.plain.close)
        self.store = VStore(backend, reactor=reactor, reactor_reads=True)
        yield self.store.open()
        self.addCleanup(self.store.close)
        yield self.plain.add_domain("example.com")
        yield self.plain.add_alias_domain("alias.example", "example.com")
        for name, inactive in (("alice", False), ("bob", True), ("o'neil", False)):
            yield self.plain.add_user(VUser(name, "example.com", "$6$x$y", 1, 0, name.title(),
                                            f"/home/{name}", "NOQUOTA", inactive))

    @defer.inlineCallbacks
    def test_lookups_match_the_thread_path(self):
        self.assertIsNotNone(self.store._wire)
        for address in ("alice@example.com", "ALICE@Example.COM", "bob@example.com",
                        "o'neil@example.com", "alice@alias.example", "nobody@example.com"):
            wired = yield self.store.lookup(address)
            threaded = yield self.plain.lookup(address)
            self.assertEqual(wired, threaded, address)
        self.assertTrue((yield self.store.lookup("bob@example.com")).inactive)
        self.assertIsNone((yield self.store.lookup("nobody@example.com")))
        self.assertTrue(self.store._wire._all, "the wire answered")

    @defer.inlineCallbacks
    def test_concurrent_lookups_go_over_the_wire_in_batches(self):
        users = yield defer.gatherResults([self.store.get_user(n, "example.com")
                                           for n in ("alice", "bob", "o'neil", "zed") * 5])
        self.assertEqual([u.pw_name if u else None for u in users[:4]],
                         ["alice", "bob", "o'neil", None])
        self.assertLessEqual(len(self.store._wire._all), self.store._wire.size)

    @defer.inlineCallbacks
    def test_a_failing_wire_falls_back_to_the_pool(self):
        self.store._wire.backend = _as(self.store._wire.backend, port=1)
        user = yield self.store.get_user("alice", "example.com")
        self.assertEqual(user.pw_gecos, "Alice")
        self.assertTrue(self.store._wire_failing)

    @defer.inlineCallbacks
    def test_database_errors_still_reach_the_caller(self):
        yield threads.deferToThread(run_sql, self.store.backend, ["DROP TABLE indimail"])
        with self.assertRaises(pymysql.err.ProgrammingError):
            yield self.store.get_user("alice", "example.com")

    def test_sqlite_store_has_no_wire(self):
        from .helpers import sqlite_backend
        store = VStore(sqlite_backend(self), reactor=reactor, reactor_reads=True)
        d = store.open()
        d.addCallback(lambda _: self.assertIsNone(store._wire))
        d.addBoth(lambda r: (store.close(), r)[1])
        return d
