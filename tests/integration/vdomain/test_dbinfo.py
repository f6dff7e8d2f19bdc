"""The dbinfo command: mcdinfo and the central database's dbinfo table kept
in step (the newer side wins), records shown, inserted, updated and
removed as upstream's dbinfo does, on MariaDB."""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, threads, utils
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.vdomain.backend import format_mcdinfo, parse_host_mysql, parse_mcdinfo

from tests.unit.vdomain.test_distributed import (MCD_PASS, MCD_USER, grant_mcd_user,
                                                 mcd_databases, mcd_entry)

from .helpers import MYSQL, run_sql


class DbinfoCommandTests(TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        yield threads.deferToThread(grant_mcd_user)
        self.central, self.db_a = mcd_databases(self, 2)
        self.root = parse_host_mysql(MYSQL, {"MYSQL_PASSWD": ""})
        yield threads.deferToThread(run_sql, self.root, [f"CREATE DATABASE {n}" for n in
                                                         (self.central, self.db_a)],
                                    with_database=False)
        # dbinfo.filename is IndiMail's char(128): keep the home's path short
        base = tempfile.mkdtemp(prefix="dbinfo")
        self.addCleanup(shutil.rmtree, base, True)
        self.home = init_home(Path(base) / "home", hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        (self.home.control / "host.mysql").write_text(
            f"{self.root.host}:{MCD_USER}:{MCD_PASS}:{self.root.port}\n")
        self.mcdinfo = self.home.control / "mcdinfo"
        self.entries = [mcd_entry("dist.test", self.db_a, "10.0.0.1"),
                        mcd_entry("dist.test", "indimail_mcd_absent", "10.0.0.2")]
        self.mcdinfo.write_text(format_mcdinfo(self.entries))
        os.utime(self.mcdinfo, (time.time(), time.time() - 100))
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MYSQL_HOST", "INDIMAIL_HOME", "CONTROLDIR", "MCDFILE",
                                 "MYSQL_PASSWD", "POST_HANDLE")}
        self.env.update(INDIMAIL_HOME=str(self.home.path), MYSQL_DATABASE=self.central)

    def dbinfo(self, *args, **env):
        """(stdout, stderr, status) of the dbinfo console command."""
        argv = ("-c", "from indimail.cli.dbinfo import main; main()") + args
        return utils.getProcessOutputAndValue(sys.executable, argv, env=dict(self.env, **env))

    def table(self):
        """Blocking-in-a-thread: the dbinfo rows (filename, domain, mdahost, dbname)."""
        backend = parse_host_mysql(f"{self.root.host}:{MCD_USER}:{MCD_PASS}:{self.root.port}",
                                   {"MYSQL_DATABASE": self.central})
        return threads.deferToThread(
            run_sql, backend, ["SELECT filename, domain, mdahost, dbname FROM dbinfo "
                               "ORDER BY mdahost"])

    @defer.inlineCallbacks
    def test_show_syncs_file_into_table_and_reports_each_database(self):
        """dbinfo -s loads mcdinfo into the dbinfo table (named by the file's
        path) and shows each record: a reachable database with its server's
        status, an unreachable one with the connect error."""
        out, err, code = yield self.dbinfo("-v", "-s")
        self.assertEqual((code, err), (0, b""), out)
        text = out.decode()
        self.assertIn("dbinfo: Updating Table dbinfo\n", text)
        self.assertIn("MySQL Client Version: PyMySQL", text)
        self.assertIn("domain         dist.test - Distributed\nsqlserver[001] ", text)
        self.assertIn(f"TCP/IP Port    {self.root.port}\ndatabase       {self.db_a}\n", text)
        self.assertIn("DBINFO Method  DBINFO\nmda host       10.0.0.1\nMySQL Status   Uptime: ",
                      text)
        self.assertIn(f"connection to  {self.root.host} via TCP/IP\n", text)
        self.assertIn("server version ", text)
        self.assertIn("mda host       10.0.0.2\nMySQL Status   mysql_real_connect: ", text)
        self.assertEqual(text.count("--------------------------\n"), 2)
        rows = yield self.table()
        self.assertEqual(list(rows), [(str(self.mcdinfo), "dist.test", "10.0.0.1", self.db_a),
                                      (str(self.mcdinfo), "dist.test", "10.0.0.2",
                                       "indimail_mcd_absent")])
        out, err, code = yield self.dbinfo("-v", "-s", "-l", "-m", "10.0.0.2")
        self.assertEqual(out.decode(), "dbinfo: Nothing to update\n"
                         f"DBINFO  dist.test  1 {self.root.host} 10.0.0.2 {self.root.port} 0 "
                         f"indimail_mcd_absent {MCD_USER} {MCD_PASS}\n")

    @defer.inlineCallbacks
    def test_insert_update_remove(self):
        """-i adds a record to the table and the file, -u changes it, -r
        removes it; a duplicate insert or a missing record fails."""
        out, err, code = yield self.dbinfo("-v", "-i", "-S", "127.0.0.1", "-p", "3307",
                                           "-o", "0", "-D", "db3", "-U", "u3", "-P", "p3",
                                           "-c", "-d", "new.test", "-m", "10.0.0.3", "mcdinfo")
        self.assertEqual((code, err), (0, b""), out)
        self.assertIn(b"dbinfo: Added domain new.test\n", out)
        records = parse_mcdinfo(self.mcdinfo.read_text())
        self.assertEqual(records[:2], self.entries)
        self.assertEqual((records[2].domain, records[2].distributed, records[2].port,
                          records[2].database, records[2].mdahost),
                         ("new.test", 1, 3307, "db3", "10.0.0.3"))
        self.assertEqual(len((yield self.table())), 3)
        out, err, code = yield self.dbinfo("-i", "-S", "127.0.0.1", "-p", "3307", "-D", "db3",
                                           "-U", "u3", "-P", "p3", "-d", "new.test",
                                           "-m", "10.0.0.3", "mcdinfo")
        self.assertEqual(code, 1)
        self.assertIn(b"exists", err)
        out, err, code = yield self.dbinfo("-u", "-S", "10.1.1.1", "-D", "db4", "-c",
                                           "-d", "new.test", "-m", "10.0.0.3", "mcdinfo")
        self.assertEqual((code, err), (0, b""))
        changed = parse_mcdinfo(self.mcdinfo.read_text())[2]
        self.assertEqual((changed.server, changed.database, changed.port, changed.user),
                         ("10.1.1.1", "db4", 3307, "u3"))
        out, err, code = yield self.dbinfo("-r", "-d", "new.test", "-m", "10.0.0.3",
                                           str(self.mcdinfo))
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(parse_mcdinfo(self.mcdinfo.read_text()), self.entries)
        self.assertEqual(len((yield self.table())), 2)
        out, err, code = yield self.dbinfo("-r", "-d", "new.test", "-m", "10.0.0.3", "mcdinfo")
        self.assertEqual(code, 1)
        out, err, code = yield self.dbinfo("-r", "-d", "new.test", "mcdinfo")
        self.assertEqual(code, 100)
        self.assertIn(b"usage: dbinfo [options] MCDF_file_PATH", err)

    @defer.inlineCallbacks
    def test_newer_side_wins(self):
        """A missing file is written back from the table (dated like it); an
        edited file newer than the table replaces the table's rows."""
        yield self.dbinfo("-s", "-l")
        original = self.mcdinfo.read_text()
        self.mcdinfo.unlink()
        out, err, code = yield self.dbinfo("-v", "-s", "-l")
        self.assertEqual((code, err), (0, b""))
        self.assertIn(f"dbinfo: Updating File {self.mcdinfo}\n".encode(), out)
        self.assertEqual(self.mcdinfo.read_text(), original)
        out, err, code = yield self.dbinfo("-v", "-s", "-l")
        self.assertIn(b"dbinfo: Nothing to update\n", out)
        self.mcdinfo.write_text(format_mcdinfo(self.entries[:1]))
        os.utime(self.mcdinfo, (time.time(), time.time() + 60))
        out, err, code = yield self.dbinfo("-v", "-s", "-l")
        self.assertIn(b"dbinfo: Updating Table dbinfo\n", out)
        self.assertEqual([r[2] for r in (yield self.table())], ["10.0.0.1"])

    @defer.inlineCallbacks
    def test_auto_records_and_home_option(self):
        """--home picks the home; a domain of the central database that
        mcdinfo does not list shows as an ``auto`` record of host.mysql."""
        env = {"INDIMAIL_HOME": "/nonexistent"}
        out, err, code = yield self.dbinfo("--home", str(self.home.path), "-s", "-l", **env)
        self.assertEqual((code, err), (0, b""))
        self.assertNotIn(b"auto ", out)
        argv = ("-c", "from indimail.cli.vadddomain import main; main()", "plain.test", "pm")
        out, err, code = yield utils.getProcessOutputAndValue(sys.executable, argv,
                                                              env=self.env)
        self.assertEqual((code, err), (0, b""))
        (self.home.control / "localiphost").write_text("192.0.2.7\n")
        out, err, code = yield self.dbinfo("--home", str(self.home.path), "-s", "-l",
                                           "-d", "plain.test", **env)
        self.assertEqual(out.decode(), f"auto  plain.test  0 {self.root.host} 192.0.2.7 "
                         f"{self.root.port} 0 {self.central} {MCD_USER} {MCD_PASS}\n")
