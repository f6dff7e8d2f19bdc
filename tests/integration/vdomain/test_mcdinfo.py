"""A distributed domain over two databases named by control/mcdinfo: users
added with vadduser on two mail stores (HOSTID h1 and h2) land in their
store's database, and vuserinfo, SMTP AUTH's checker, CHECKRECIPIENT and
vdelivermail each find them there.  The central database (host.mysql) keeps
hostcntrl and host_table; three databases on the local MariaDB stand for
the three servers."""

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor, threads, utils
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.init import init_home
from indimail.vdomain import credchecker
from indimail.vdomain.backend import format_mcdinfo
from indimail.vdomain.recipients import FOUND, RecipientCheck
from indimail.testing import ChildProcess, free_port, smtp_sink_argv, wait_for
from indimail.vdomain.store import open_store

from tests.unit.vdomain.test_distributed import (MCD_PASS, MCD_USER, grant_mcd_user,
                                                 mcd_databases, mcd_entry, rows_in)

from indimail.vdomain.backend import parse_host_mysql

from .helpers import MYSQL, run_sql

MESSAGE = b"From: carol@remote.test\nTo: someone\nSubject: hello\n\nbody\n"


class DistributedDomainTests(TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        yield threads.deferToThread(grant_mcd_user)
        self.central, self.db_a, self.db_b = mcd_databases(self, 3)
        root = parse_host_mysql(MYSQL, {"MYSQL_PASSWD": ""})
        yield threads.deferToThread(run_sql, root, [f"CREATE DATABASE {n}" for n in
                                                    (self.central, self.db_a, self.db_b)],
                                    with_database=False)
        self.home = init_home(Path(self.mktemp()).absolute(), hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        (self.home.control / "host.mysql").write_text(
            f"{root.host}:{MCD_USER}:{MCD_PASS}:{root.port}\n")
        (self.home.control / "mcdinfo").write_text(format_mcdinfo([
            mcd_entry("dist.test", self.db_a, "10.0.0.1"),
            mcd_entry("dist.test", self.db_b, "127.0.0.1")]))
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MYSQL_HOST", "INDIMAIL_HOME", "CONTROLDIR", "QUEUE_BASE",
                                 "POST_HANDLE", "HOSTID", "MCDFILE", "MYSQL_PASSWD")}
        self.env.update(INDIMAIL_HOME=str(self.home.path), MYSQL_DATABASE=self.central)
        store = yield open_store(self.home, self.env)
        try:
            yield store.set_host_ip("h1", "10.0.0.1")
            yield store.set_host_ip("h2", "127.0.0.1")
        finally:
            store.close()
        self.addCleanup(credchecker.close_shared_stores)
        out, err, code = yield self.command("vadddomain", "dist.test", "pmpass", HOSTID="h1")
        self.assertEqual((code, err), (0, b""))
        for name, hostid in (("alice", "h1"), ("bob", "h2")):
            out, err, code = yield self.command("vadduser", f"{name}@dist.test",
                                                f"{name}pass", HOSTID=hostid)
            self.assertEqual((code, err), (0, b""))

    def command(self, command, *args, stdin=None, **env):
        """(stdout, stderr, status) of the console command *command* run as ``python -c``."""
        argv = ("-c", f"import sys; from indimail.cli.{command} import main; "
                      "main()") + args
        environ = dict(self.env, **env)
        if stdin is None:
            return utils.getProcessOutputAndValue(sys.executable, argv, env=environ)
        return utils.getProcessOutputAndValue(
            "/bin/sh", ("-c", 'f="$1"; shift; exec "$@" < "$f"', "sh", str(stdin),
                        sys.executable) + argv, env=environ)

    def rows(self, database):
        return threads.deferToThread(rows_in, database)

    @defer.inlineCallbacks
    def test_users_land_in_their_stores_database(self):
        """vadduser on h1 writes database A, on h2 database B, none the central
        one; hostcntrl (central) names each user's host."""
        self.assertEqual((yield self.rows(self.db_a)),
                         [("alice", "dist.test"), ("postmaster", "dist.test")])
        self.assertEqual((yield self.rows(self.db_b)), [("bob", "dist.test")])
        self.assertEqual((yield self.rows(self.central)), [])
        hosts = yield threads.deferToThread(
            run_sql, parse_host_mysql(f"127.0.0.1:{MCD_USER}:{MCD_PASS}",
                                      {"MYSQL_DATABASE": self.central}),
            ["SELECT pw_name, host FROM hostcntrl ORDER BY pw_name"])
        self.assertEqual(list(hosts), [("alice", "h1"), ("bob", "h2"), ("postmaster", "h1")])

    @defer.inlineCallbacks
    def test_vuserinfo_reads_each_users_database(self):
        """vuserinfo shows alice (database A) and bob (database B) from any node."""
        for name in ("alice", "bob"):
            out, err, code = yield self.command("vuserinfo", f"{name}@dist.test")
            self.assertEqual((code, err), (0, b""), out)
            self.assertIn(f"name          : {name}".encode(), out)
        out, err, code = yield self.command("vuserinfo", "nobody@dist.test")
        self.assertNotEqual(code, 0)

    @defer.inlineCallbacks
    def test_auth_checker_finds_each_user(self):
        """SMTP AUTH's checker over the home's shared store authenticates a
        user of each database and refuses a wrong password."""
        checker = credchecker.StoreChecker.for_home(self.home, self.env, reactor)
        for name in ("alice", "bob"):
            avatar = yield checker.requestAvatarId(
                UsernamePassword(f"{name}@dist.test".encode(), f"{name}pass".encode()))
            self.assertEqual(avatar, f"{name}@dist.test".encode())
        with self.assertRaises(UnauthorizedLogin):
            yield checker.requestAvatarId(UsernamePassword(b"bob@dist.test", b"alicepass"))

    @defer.inlineCallbacks
    def test_checkrecipient_finds_each_user(self):
        """CHECKRECIPIENT 1 finds alice and bob in their databases, not a stranger."""
        check = RecipientCheck(ControlFiles(self.home.control), self.home,
                               store=lambda: credchecker.shared_store(self.home, self.env,
                                                                      reactor),
                               reactor=reactor, in_rcpthosts=lambda _a: True)
        for name in ("alice", "bob"):
            found = yield check.lookup(1, f"{name}@dist.test")
            self.assertEqual((found.status, found.source), (FOUND, "sql"))
        self.assertNotEqual((yield check.lookup(1, "nobody@dist.test")).status, FOUND)

    @defer.inlineCallbacks
    def test_vdelivermail_delivers_on_each_store(self):
        """vdelivermail on h1 delivers alice's mail, on h2 bob's, each user
        read from its own database (its Maildir under its pw_dir)."""
        message = Path(self.mktemp())
        message.write_bytes(MESSAGE)
        for name, hostid in (("alice", "h1"), ("bob", "h2")):
            out, err, code = yield self.command(
                "vdelivermail", "", "bounce-no-mailbox", stdin=message, HOSTID=hostid,
                EXT=name, HOST="dist.test", SENDER="carol@remote.test")
            self.assertEqual(code, 0, out + err)
            new = self.home.domains / "dist.test" / name / "Maildir" / "new"
            files = list(new.iterdir())
            self.assertEqual(len(files), 1)
            self.assertIn(b"Subject: hello", files[0].read_bytes())
        out, err, code = yield self.command(
            "vdelivermail", "", "bounce-no-mailbox", stdin=message, HOSTID="h1",
            EXT="nobody", HOST="dist.test", SENDER="carol@remote.test")
        self.assertEqual(code, 100, out + err)

    @defer.inlineCallbacks
    def test_vdelivermail_relays_users_of_the_other_store(self):
        """On h1, mail for bob (hostcntrl h2, host_table 127.0.0.1) is relayed
        to h2's SMTP port (here smtp-sink), not written to a local Maildir."""
        dump = tempfile.mkdtemp(prefix="sink")
        self.addCleanup(shutil.rmtree, dump, True)
        port = free_port()
        sink = ChildProcess(reactor, smtp_sink_argv(port, dump), env={})
        self.addCleanup(sink.kill)

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        yield defer.Deferred.fromCoroutine(wait_for(reactor, listening, what="smtp-sink"))
        store = yield open_store(self.home, self.env)
        try:
            yield store.set_smtp_port("127.0.0.1", "*", "dist.test", port)
        finally:
            store.close()
        message = Path(self.mktemp())
        message.write_bytes(MESSAGE)
        out, err, code = yield self.command(
            "vdelivermail", "", "bounce-no-mailbox", stdin=message, HOSTID="h1",
            EXT="bob", HOST="dist.test", SENDER="carol@remote.test")
        self.assertEqual(code, 0, out + err)
        self.assertIn(b"127.0.0.1 accepted message", out)
        files = yield defer.Deferred.fromCoroutine(
            wait_for(reactor, lambda: os.listdir(dump), what="relayed message"))
        self.assertIn(b"X-Rcpt-Args: <bob@dist.test>", Path(dump, files[0]).read_bytes())
        self.assertFalse(list((self.home.domains / "dist.test" / "bob" / "Maildir" / "new")
                              .iterdir()))
