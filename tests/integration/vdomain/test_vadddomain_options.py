"""vadddomain's and vdominfo's upstream options run as programs, on SQLite
and on MariaDB: the files and lines they write, vdominfo's exact lines, the
delivery those files then give (unknown users to the ``-e`` address, ETRN
and AUTOTURN Maildirs), and a ``-D`` domain whose database dbinfo records."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor, threads, utils
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.init import init_home
from indimail.delivery.local import LocalDelivery
from indimail.delivery.result import SUCCESS
from indimail.vdomain.backend import parse_host_mysql, parse_mcdinfo
from indimail.vdomain.store import open_store
from tests.unit.delivery.support import FakeEnqueuer, queue_message
from tests.unit.vdomain.test_distributed import (MCD_PASS, MCD_USER, grant_mcd_user,
                                                 mcd_databases, rows_in)

from .helpers import MYSQL, run_sql
from .vhome import MysqlHome, StoreCalls

MESSAGE = b"From: carol@remote.test\nSubject: hello\n\nhi\n"


class OptionsMixin(StoreCalls):
    maxDiff = None

    @defer.inlineCallbacks
    def setUp(self):
        root = tempfile.mkdtemp(prefix="imo-")   # short: pw_dir is char(156)
        self.addCleanup(shutil.rmtree, root, True)
        self.root = Path(root)
        self.home = init_home(self.root / "home", hostname="mx.test", env={"QUEUE_COUNT": "1"})
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MYSQL_HOST", "INDIMAIL_HOME", "CONTROLDIR", "QUEUE_BASE",
                                 "POST_HANDLE", "HOSTID", "MCDFILE", "BASE_PATH")}
        self.env["INDIMAIL_HOME"] = str(self.home.path)
        yield self.prepare_database()

    def prepare_database(self):
        return defer.succeed(None)

    def command(self, command, *args, **env):
        """(stdout, stderr, exit status) of ``python -m indimail.cli.<command> args``."""
        return utils.getProcessOutputAndValue(
            sys.executable, ("-m", f"indimail.cli.{command}") + args, env=dict(self.env, **env))

    @defer.inlineCallbacks
    def ok(self, command, *args, **env):
        out, err, code = yield self.command(command, *args, **env)
        self.assertEqual((code, err), (0, b""), out)
        return out.decode()

    @defer.inlineCallbacks
    def deliver(self, recipient):
        """Deliver MESSAGE to the (virtualdomains-rewritten) *recipient* in-process."""
        store = yield open_store(self.home, self.env)
        self.addCleanup(store.close)
        enqueuer = FakeEnqueuer()
        agent = LocalDelivery(self.home, ControlFiles(self.home.control), enqueuer,
                              reactor=reactor, store=store,
                              env={"PATH": os.environ.get("PATH", "")})
        queue, msgid = queue_message(self.home, MESSAGE, 5000 + len(recipient))
        result = yield agent.deliver(queue, msgid, "carol@remote.test", recipient)
        return result, enqueuer

    @defer.inlineCallbacks
    def test_placement_options_and_vdominfo(self):
        """-d -l -B -C -q place the domain and its users; vdominfo prints
        upstream's lines for all fields and for the chosen ones."""
        alt, base = self.root / "alt", self.root / "mail"
        out = yield self.ok("vadddomain", "-d", str(alt), "-l", "2", "-B", str(base), "-C",
                            "-q", "5M", "example.com", "pmpass")
        self.assertEqual(out, "")
        ddir = alt / "domains" / "example.com"
        yield self.ok("vadduser", "bob@example.com", "pw")
        yield self.ok("vadduser", "carl@example.com", "pw")
        carl = yield self.store_call("get_user", "carl", "example.com")
        self.assertEqual(carl.pw_dir, str(base / "example.com" / "0" / "carl"))
        postmaster = yield self.store_call("get_user", "postmaster", "example.com")
        self.assertEqual(postmaster.pw_shell, "5242880")
        self.assertIn("example.com", (self.home.control / "chkrcptdomains").read_text())
        uid, gid = os.getuid(), os.getgid()
        out = yield self.ok("vdominfo", "example.com")
        self.assertEqual(out, (
            "---- Domain example.com               -------------------------------\n"
            f"    domain: example.com\n       uid: {uid}\n       gid: {gid}\n"
            f"Domain Dir: {ddir}\n  Base Dir: {base}\n     Users: 3\n   vlimits: disabled\n"))
        out = yield self.ok("vdominfo", "-d", "-t", "-n", "example.com")
        self.assertEqual(out, (
            "---- Domain example.com ----------------\n    domain: example.com\n"
            f"Domain Dir: {ddir}\n     Users: 3\n   vlimits: disabled\n"))
        yield self.ok("vdeldomain", "example.com")
        self.assertFalse(ddir.exists())
        self.assertFalse((base / "example.com").exists())

    @defer.inlineCallbacks
    def test_unknown_users_go_to_the_bounce_address(self):
        """-e: mail for a user the domain does not have is forwarded there by
        the vdelivermail line; -b keeps upstream's bounce."""
        yield self.ok("vadddomain", "-e", "catch@else.test", "example.com", "pmpass")
        result, enqueuer = yield self.deliver("example.com-ghost@example.com")
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(enqueuer.finished[0].recipients, ["catch@else.test"])
        yield self.ok("vadddomain", "-e", "catch@else.test", "-b", "example.org", "pmpass")
        result, enqueuer = yield self.deliver("example.org-ghost@example.org")
        self.assertNotEqual(result.status, SUCCESS)
        self.assertEqual(enqueuer.finished, [])

    @defer.inlineCallbacks
    def test_etrn_and_autoturn_domains_receive_mail(self):
        """-t: the domain's mail is kept in its Maildir under autoturn/;
        -T ip: mail of the domain lands in autoturn/<ip>/Maildir; neither has a
        database row, a postmaster or a post handle."""
        handle = self.root / "handle"
        handle.write_text(f"#!/bin/sh\necho \"$@\" >> {self.root / 'ran'}\n")
        handle.chmod(0o755)
        yield self.ok("vadddomain", "-t", "etrn.test", POST_HANDLE=str(handle))
        yield self.ok("vadddomain", "-T", "10.1.2.3", "auto.test", POST_HANDLE=str(handle))
        self.assertFalse((self.root / "ran").exists())
        self.assertIsNone((yield self.store_call("real_domain", "etrn.test")))
        turn = self.home.path / "autoturn"
        result, _ = yield self.deliver("etrn.test-anyone@etrn.test")
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(list((turn / "etrn.test" / "Maildir" / "new").iterdir())), 1)
        virtual = (self.home.control / "virtualdomains").read_text().splitlines()
        self.assertIn("auto.test:autoturn-10.1.2.3", virtual)
        result, _ = yield self.deliver("autoturn-10.1.2.3-someone@auto.test")
        self.assertEqual(result.status, SUCCESS, result.report)
        self.assertEqual(len(list((turn / "10.1.2.3" / "Maildir" / "new").iterdir())), 1)
        self.assertEqual((self.home.control / "etrnhosts").read_text(), "etrn.test\nauto.test\n")

    @defer.inlineCallbacks
    def test_usage_errors(self):
        """Bad combinations exit 100 with upstream's message and change nothing."""
        for args, text in ((("-t", "-B", "/x", "a.test"), b"option -B not valid for ETRN"),
                           (("-c", "-S", "db", "a.test", "pw"),
                            b"specify sqlserver, database, dbuser, dbpass and dbport"),
                           (("-e", "nobody", "a.test", "pw"),
                            b"Invalid bounce email address nobody"),
                           ((), b"Domain not specified"),
                           (("-u", "no-such-user-here", "a.test", "pw"),
                            b"user no-such-user-here not found in /etc/passwd")):
            out, err, code = yield self.command("vadddomain", *args)
            self.assertEqual(code, 100, (args, err))
            self.assertIn(text, err)
        self.assertIsNone((yield self.store_call("real_domain", "a.test")))
        out = yield self.ok("vadddomain", "-V")
        self.assertTrue(out.startswith("vadddomain: version "))

    @defer.inlineCallbacks
    def test_database_domain(self):
        """-D/-S/-U/-P/-p/-s: the domain's database goes to dbinfo and mcdinfo
        (with this node's address as mail store and its host id in
        host_table), the postmaster into that database; -v says so; with
        host.cntrl vdominfo shows the node's host ID and address.  -c makes it
        distributed: the postmaster's host goes to hostcntrl."""
        yield threads.deferToThread(grant_mcd_user)
        [target] = mcd_databases(self, 1)
        mysql = parse_host_mysql(MYSQL, {"MYSQL_PASSWD": ""})
        yield threads.deferToThread(run_sql, mysql, [f"CREATE DATABASE {target}"],
                                    with_database=False)
        (self.home.control / "localiphost").write_text("127.0.0.1\n")
        out = yield self.ok("vadddomain", "-v", "-D", target, "-S", mysql.host, "-U", MCD_USER,
                            "-P", MCD_PASS, "-p", str(mysql.port), "-s", "0", "db.test",
                            "pmpass", HOSTID="node1")
        self.assertEqual(out, "Added domain db.test\n")
        [entry] = parse_mcdinfo((self.home.control / "mcdinfo").read_text())
        self.assertEqual((entry.domain, entry.distributed, entry.server, entry.mdahost,
                          entry.port, entry.use_ssl, entry.database, entry.user),
                         ("db.test", 0, mysql.host, "127.0.0.1", mysql.port, False, target,
                          MCD_USER))
        self.assertEqual([(e.domain, e.database) for e in
                          (yield self.store_call("dbinfo"))], [("db.test", target)])
        self.assertEqual((yield self.store_call("host_ip", "node1")), "127.0.0.1")
        rows = yield threads.deferToThread(rows_in, target)
        self.assertEqual(rows, [("postmaster", "db.test")])
        (self.home.control / "host.cntrl").write_text("localhost\n")
        out = yield self.ok("vdominfo", "-n", "db.test", HOSTID="node1")
        self.assertEqual(out, "---- Domain db.test ----------------\n    domain: db.test\n"
                              "   host ID: node1\n   IP Addr: 127.0.0.1\n")
        yield self.ok("vadddomain", "-c", "-D", target, "-S", mysql.host, "-U", MCD_USER,
                      "-P", MCD_PASS, "-p", str(mysql.port), "-s", "0", "dist.test", "pw",
                      HOSTID="node1")
        self.assertEqual([(e.domain, e.distributed) for e in
                          (yield self.store_call("dbinfo"))], [("db.test", 0), ("dist.test", 1)])
        self.assertEqual((yield self.store_call("mailstore", "postmaster", "dist.test")),
                         "node1")


class SqliteOptionsTests(OptionsMixin, TestCase):
    """The options on the embedded SQLite store."""


class MysqlOptionsTests(MysqlHome, OptionsMixin, TestCase):
    """The options on MariaDB, chosen by ``control/host.mysql``."""
