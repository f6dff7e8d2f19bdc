"""The v* admin commands run as programs, on SQLite and on MariaDB."""

import os
import sys
from pathlib import Path

from twisted.internet import defer, threads, utils
from twisted.trial.unittest import TestCase

from indimail.auth import schemes
from indimail.config.init import init_home
from indimail.vdomain.backend import parse_host_mysql
from indimail.vdomain.store import open_store

from .helpers import MYSQL, run_sql
from .vhome import MysqlHome


class CommandTestsMixin:
    """Each command exits 0 and acts, or exits non-zero with a message."""

    maxDiff = None
    # vpasswd options and what the stored form then holds and vuserinfo names it
    vpasswd_opts = ("-C", "-m", "SCRAM-SHA-256")
    stored_mark, scheme_name = ":newsecret,$5$", " (SCRAM-SHA-256)"

    @defer.inlineCallbacks
    def setUp(self):
        self.home = init_home(Path(self.mktemp()), hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MYSQL_HOST", "INDIMAIL_HOME", "CONTROLDIR", "QUEUE_BASE")}
        self.env["INDIMAIL_HOME"] = str(self.home.path)
        yield self.prepare_database()

    def prepare_database(self):
        return defer.succeed(None)

    def command(self, command, *args):
        """(stdout, stderr, exit status) of ``python -m indimail.cli.<command> args``."""
        return utils.getProcessOutputAndValue(
            sys.executable, ("-m", f"indimail.cli.{command}") + args, env=self.env)

    @defer.inlineCallbacks
    def user(self, name, domain):
        store = yield open_store(self.home, self.env)
        try:
            return (yield store.get_user(name, domain))
        finally:
            store.close()

    @defer.inlineCallbacks
    def test_domain_and_user_lifecycle(self):
        """vadddomain, vadduser, vpasswd, vuserinfo, vdominfo, vdeluser, vdeldomain."""
        out, err, code = yield self.command("vadddomain", "example.com", "pmpass")
        self.assertEqual((code, err), (0, b""))
        ddir = self.home.domains / "example.com"
        self.assertTrue((ddir / ".qmail-default").read_text().endswith(
            "/vdelivermail '' bounce-no-mailbox\n"))
        out, err, code = yield self.command("vadduser", "-c", "Manny M", "manny@example.com",
                                        "supersecret")
        self.assertEqual((code, err), (0, b""))
        self.assertTrue((ddir / "manny" / "Maildir" / "tmp").is_dir())
        out, err, code = yield self.command("vpasswd", *self.vpasswd_opts,
                                            "manny@example.com", "newsecret")
        self.assertEqual((code, err), (0, b""))
        stored = (yield self.user("manny", "example.com")).pw_passwd
        self.assertIn(self.stored_mark, stored)
        self.assertTrue(schemes.verify_plain(schemes.parse_stored(stored), b"newsecret"))
        out, err, code = yield self.command("vuserinfo", "manny@example.com")
        self.assertEqual(code, 0)
        lines = out.decode().splitlines()
        self.assertEqual(lines[0], "name          : manny@example.com")
        self.assertTrue(lines[1].endswith(self.scheme_name))
        self.assertIn("gecos         : Manny M", lines)
        out, err, code = yield self.command("vuserinfo", "-d", "manny@example.com")
        self.assertEqual(out.decode(), f"dir           : {ddir / 'manny'}\n")
        out, err, code = yield self.command("vdominfo", "example.com")
        self.assertEqual(code, 0)
        self.assertIn("     Users: 2\n", out.decode())
        out, err, code = yield self.command("vdeluser", "manny@example.com")
        self.assertEqual(code, 0)
        self.assertFalse((ddir / "manny").exists())
        out, err, code = yield self.command("vdeldomain", "example.com")
        self.assertEqual(code, 0)
        self.assertFalse(ddir.exists())
        self.assertNotIn("example.com", (self.home.control / "rcpthosts").read_text())

    @defer.inlineCallbacks
    def test_errors_exit_non_zero_with_message(self):
        """Unknown users and domains, bad hashes and usage errors fail clearly."""
        out, err, code = yield self.command("vuserinfo", "nobody@nowhere.org")
        self.assertEqual((code, err), (1, b"vuserinfo: nowhere.org: No such domain\n"))
        yield self.command("vadddomain", "example.com", "pw")
        out, err, code = yield self.command("vadddomain", "example.com", "pw")
        self.assertEqual((code, err), (1, b"vadddomain: domain example.com exists\n"))
        out, err, code = yield self.command("vpasswd", "ghost@example.com", "pw")
        self.assertEqual((code, err), (1, b"vpasswd: ghost@example.com: No such user\n"))
        out, err, code = yield self.command("vpasswd", "-h", "ROT13", "postmaster@example.com", "x")
        self.assertEqual(code, 100)
        self.assertIn(b"wrong hash method", err)
        out, err, code = yield self.command("vdeluser")
        self.assertNotEqual(code, 0)
        self.assertIn(b"usage: vdeluser", err)
        out, err, code = yield self.command("vdominfo", "--home", str(self.home.path), "ghost.org")
        self.assertEqual((code, err), (1, b"vdominfo: ghost.org: domain does not exist\n"))


class SqliteCommandTests(CommandTestsMixin, TestCase):
    """The commands on the embedded SQLite store."""

    @defer.inlineCallbacks
    def test_home_option(self):
        """--home names the home when INDIMAIL_HOME does not."""
        del self.env["INDIMAIL_HOME"]
        out, err, code = yield self.command("vadddomain", "--home", str(self.home.path),
                                        "example.org", "pw")
        self.assertEqual((code, err), (0, b""))
        self.assertTrue((self.home.domains / "example.org" / "postmaster").is_dir())


    @defer.inlineCallbacks
    def test_post_handle(self):
        """After success <home>/libexec/<program> runs with the domain or address,
        and its exit status is the command's; POST_HANDLE names another program."""
        libexec = self.home.path / "libexec"
        libexec.mkdir()
        for name, text in (("vadddomain", 'echo "domain $1"\n'),
                           ("vadduser", 'echo "user $1"\nexit 3\n')):
            (libexec / name).write_text("#!/bin/sh\n" + text)
            (libexec / name).chmod(0o755)
        out, err, code = yield self.command("vadddomain", "Example.com", "pw")
        self.assertEqual((out, err, code), (b"domain example.com\n", b"", 0))
        out, err, code = yield self.command("vadduser", "bob@example.com", "pw")
        self.assertEqual((out, code), (b"user bob@example.com\n", 3))
        other = Path(self.mktemp())
        other.write_text('#!/bin/sh\necho "other $1"\n')
        other.chmod(0o755)
        self.env["POST_HANDLE"] = str(other.resolve())
        out, err, code = yield self.command("vpasswd", "bob@example.com", "pw2")
        self.assertEqual((out, code), (b"other bob@example.com\n", 0))
        out, err, code = yield self.command("vpasswd", "ghost@example.com", "pw2")
        self.assertEqual((out, code), (b"", 1))


class MysqlCommandTests(MysqlHome, CommandTestsMixin, TestCase):
    """The commands on MariaDB, chosen by ``control/host.mysql``; the tables we
    create hold SCRAM forms (pw_passwd varchar(512))."""

    @defer.inlineCallbacks
    def test_user_row_is_in_mariadb(self):
        """vadduser writes the indimail table of the MariaDB database."""
        yield self.command("vadddomain", "example.com", "pw")
        out, err, code = yield self.command("vadduser", "bob@example.com", "pw")
        self.assertEqual((code, err), (0, b""))
        backend = parse_host_mysql(
            MYSQL, {"MYSQL_DATABASE": self.env["MYSQL_DATABASE"], "MYSQL_PASSWD": ""})
        rows = yield threads.deferToThread(
            run_sql, backend, ["SELECT pw_name, pw_domain, pw_uid FROM indimail "
                               "ORDER BY pw_name"])
        self.assertEqual([tuple(r) for r in rows],
                         [("bob", "example.com", 1), ("postmaster", "example.com", 1)])
        out, err, code = yield self.command("vuserinfo", "bob@example.com")
        self.assertIn(f"Sql Database  : {backend.host}:{backend.database}:{backend.user}\n"
                      f"TCP/IP Port   : {backend.port}\nUse SSL       : No\n", out.decode())
