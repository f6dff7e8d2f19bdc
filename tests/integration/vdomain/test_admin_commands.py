"""vaddaliasdomain, vmoddomain, vmoduser, vsetuserquota, vrenameuser, valias,
vlimit, vcfilter, hostcntrl and clearopensmtp run as programs, on SQLite and
on MariaDB; vcfilter's rules then filter real deliveries through vfilter."""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, threads, utils
from twisted.trial.unittest import TestCase

from indimail.auth import schemes
from indimail.config.init import init_home
from indimail.vdomain import flags as F

from .helpers import run_sql
from .vhome import MysqlHome, StoreCalls


class AdminCommandsMixin(StoreCalls):
    maxDiff = None

    @defer.inlineCallbacks
    def setUp(self):
        # A short path: IndiMail's pw_dir is char(156), and trial's mktemp
        # names nest the whole test id (longer still under _trial_temp/).
        root = tempfile.mkdtemp(prefix="imv-")
        self.addCleanup(shutil.rmtree, root, True)
        self.home = init_home(Path(root) / "home", hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MYSQL_HOST", "INDIMAIL_HOME", "CONTROLDIR", "QUEUE_BASE",
                                 "POST_HANDLE", "RELAY_CLEAR_MINUTES", "DOMAIN_LIMITS")}
        self.env["INDIMAIL_HOME"] = str(self.home.path)
        yield self.prepare_database()
        out, err, code = yield self.command("vadddomain", "example.com", "pmpass")
        self.assertEqual((code, err), (0, b""))
        out, err, code = yield self.command("vadduser", "bob@example.com", "bobpass")
        self.assertEqual((code, err), (0, b""))

    def prepare_database(self):
        return defer.succeed(None)

    def command(self, command, *args, stdin=None, env=None):
        """(stdout, stderr, exit status) of ``python -m indimail.cli.<command> args``."""
        argv = ("-m", f"indimail.cli.{command}") + args
        environ = dict(self.env, **(env or {}))
        if stdin is None:
            return utils.getProcessOutputAndValue(sys.executable, argv, env=environ)
        return utils.getProcessOutputAndValue(
            "/bin/sh", ("-c", 'f="$1"; shift; exec "$@" < "$f"', "sh", str(stdin),
                        sys.executable) + argv, env=environ)

    def handle(self):
        """A POST_HANDLE script recording its arguments; the path of the record."""
        record = Path(self.mktemp()).absolute()
        script = Path(self.mktemp()).absolute()
        script.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
        script.chmod(0o755)
        self.env["POST_HANDLE"] = str(script)
        return record

    @defer.inlineCallbacks
    def test_vaddaliasdomain(self):
        """The alias domain reaches the real domain's users, gets its control
        lines and a link to the real directory; the handle gets new and old."""
        record = self.handle()
        out, err, code = yield self.command("vaddaliasdomain", "Alias.org", "example.com")
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(record.read_text(), "alias.org example.com\n")
        self.assertEqual((yield self.store_call("real_domain", "alias.org")), "example.com")
        self.assertEqual((yield self.store_call("lookup", "bob@alias.org")).pw_domain,
                         "example.com")
        self.assertIn("alias.org\n", (self.home.control / "rcpthosts").read_text())
        link = self.home.domains / "alias.org"
        self.assertEqual(link.resolve(), (self.home.domains / "example.com").resolve())
        out, err, code = yield self.command("vaddaliasdomain", "other.org", "nowhere.org")
        self.assertEqual(code, 1)
        self.assertIn(b"failed to create alias domain other.org for domain nowhere.org", err)
        out, err, code = yield self.command("vdeldomain", "alias.org")
        self.assertEqual(code, 0)
        self.assertFalse(os.path.lexists(link))

    @defer.inlineCallbacks
    def test_vmoduser(self):
        """Flags (set, toggled, cleared), gecos, quota, passwords and the
        active/inactive toggle; the handle gets vmoduser's arguments."""
        record = self.handle()
        out, err, code = yield self.command("vmoduser", "-p", "-i", "-r", "-c", "Bob B",
                                            "-q", "5M", "bob@example.com")
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(record.read_text(), "-p -i -r -c Bob B -q 5M bob@example.com\n")
        bob = yield self.store_call("get_user", "bob", "example.com")
        self.assertEqual((bob.pw_gid, bob.pw_gecos, bob.pw_shell),
                         (F.NO_POP | F.NO_IMAP | F.NO_RELAY, "Bob B", "5242880"))
        yield self.command("vmoduser", "-t", "-p", "-s", "-q", "+1M", "bob@example.com")
        bob = yield self.store_call("get_user", "bob", "example.com")
        self.assertEqual((bob.pw_gid, bob.pw_shell),
                         (F.NO_IMAP | F.NO_RELAY | F.NO_SMTP, "6291456"))
        yield self.command("vmoduser", "-x", "-P", "newpass", "bob@example.com")
        bob = yield self.store_call("get_user", "bob", "example.com")
        self.assertEqual(bob.pw_gid, 0)
        self.assertTrue(schemes.verify_plain(schemes.parse_stored(bob.pw_passwd), b"newpass"))
        self.assertIsNotNone((yield self.store_call("last_auth", "bob", "example.com", "pass")))
        yield self.command("vmoduser", "-e", "$1$abc$def", "bob@example.com")
        self.assertEqual((yield self.store_call("get_user", "bob", "example.com")).pw_passwd,
                         "$1$abc$def")
        out, err, code = yield self.command("vmoduser", "-n", "bob@example.com")
        self.assertEqual(code, 0)
        self.assertTrue((yield self.store_call("get_user", "bob", "example.com")).inactive)
        yield self.command("vmoduser", "-n", "bob@example.com")
        self.assertFalse((yield self.store_call("get_user", "bob", "example.com")).inactive)
        out, err, code = yield self.command("vmoduser", "-p", "ghost@example.com")
        self.assertEqual((code, err), (1, b"vmoduser: no such user ghost@example.com\n"))

    @defer.inlineCallbacks
    def test_vsetuserquota_and_domain_limits(self):
        """vsetuserquota sets pw_shell and rewrites maildirsize; with domain limits
        on (vmoddomain -l 1) a perm_defaultquota 'deny modify' refuses it."""
        out, err, code = yield self.command("vsetuserquota", "bob@example.com", "10M")
        self.assertEqual((code, err), (0, b""))
        self.assertEqual((yield self.store_call("get_user", "bob", "example.com")).pw_shell,
                         "10485760")
        maildir = self.home.domains / "example.com" / "bob" / "Maildir"
        self.assertTrue((maildir / "maildirsize").read_text().startswith("10485760S\n"))
        out, err, code = yield self.command("vlimit", "-z", "m", "example.com")
        self.assertEqual(code, 0)
        out, err, code = yield self.command("vsetuserquota", "bob@example.com", "20M")
        self.assertEqual(code, 0, err)
        out, err, code = yield self.command("vmoddomain", "-l", "1", "example.com")
        self.assertEqual((code, err), (0, b""))
        self.assertTrue((self.home.domains / "example.com" / ".domain_limits").exists())
        out, err, code = yield self.command("vsetuserquota", "bob@example.com", "30M")
        self.assertEqual((code, err), (1, b"vsetuserquota: quota modification not allowed "
                                          b"for bob@example.com\n"))
        yield self.command("vmoddomain", "-l", "0", "example.com")
        self.assertFalse((self.home.domains / "example.com" / ".domain_limits").exists())

    @defer.inlineCallbacks
    def test_vmoddomain_handler(self):
        """-f 1 -h writes the vfilter line, -f 0 the vdelivermail line; bad handlers fail."""
        qmail_default = self.home.domains / "example.com" / ".qmail-default"
        out, err, code = yield self.command("vmoddomain", "-f", "1", "-h", "bounce-no-mailbox",
                                            "example.com")
        self.assertEqual((code, err), (0, b""))
        self.assertTrue(qmail_default.read_text().endswith("/vfilter '' bounce-no-mailbox\n"))
        yield self.command("vmoddomain", "-f", "0", "-h", "example.com:10.1.1.2:25",
                           "example.com")
        self.assertTrue(qmail_default.read_text().endswith(
            "/vdelivermail '' example.com:10.1.1.2:25\n"))
        out, err, code = yield self.command("vmoddomain", "-f", "0", "-h", "10.1.1.2",
                                            "example.com")
        self.assertEqual(code, 1)
        self.assertIn(b"Invalid SMTPROUTE/QMTPROUTE Specification [10.1.1.2]", err)
        out, err, code = yield self.command("vmoddomain", "-h", "delete", "example.com")
        self.assertNotEqual(code, 0)
        self.assertIn(b"you need to specify handler and vfilter option", err)

    @defer.inlineCallbacks
    def test_vrenameuser(self):
        """The row, the directory and the aliases move; the handle gets old and new."""
        record = self.handle()
        yield self.command("valias", "-i", "&bob@example.com", "bob@example.com")
        old_dir = self.home.domains / "example.com" / "bob"
        (old_dir / "Maildir" / "new" / "1.msg").write_text("kept\n")
        out, err, code = yield self.command("vrenameuser", "bob@example.com",
                                            "robert@example.com")
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(record.read_text(), "bob@example.com robert@example.com\n")
        self.assertIsNone((yield self.store_call("get_user", "bob", "example.com")))
        robert = yield self.store_call("get_user", "robert", "example.com")
        self.assertEqual((Path(robert.pw_dir) / "Maildir" / "new" / "1.msg").read_text(), "kept\n")
        self.assertFalse(old_dir.exists())
        self.assertEqual((yield self.store_call("alias_lines", "robert", "example.com")),
                         ["&bob@example.com"])
        out, err, code = yield self.command("vrenameuser", "ghost@example.com", "x@example.com")
        self.assertEqual((code, err), (1, b"vrenameuser: ghost@example.com: No such user\n"))

    @defer.inlineCallbacks
    def test_valias(self):
        """Insert, show (one alias, a domain), update, track and delete lines."""
        for line in ("&one@remote.test", "/var/mail/archive/Maildir/"):
            out, err, code = yield self.command("valias", "-i", line, "info@example.com")
            self.assertEqual((code, err), (0, b""))
        out, err, code = yield self.command("valias", "-i", "&one@remote.test",
                                            "info@example.com")
        self.assertEqual(code, 1)
        out, err, code = yield self.command("valias", "-s", "info@example.com")
        self.assertEqual(out, b"info@example.com -> &one@remote.test\n"
                              b"info@example.com -> /var/mail/archive/Maildir/\n")
        yield self.command("valias", "-u", "&one@remote.test", "-i", "&two@remote.test",
                           "info@example.com")
        out, err, code = yield self.command("valias", "-s", "example.com")
        self.assertEqual(out, b"info@example.com -> &two@remote.test\n"
                              b"info@example.com -> /var/mail/archive/Maildir/\n")
        out, err, code = yield self.command("valias", "-S", "two@remote.test")
        self.assertEqual(out, b"info@example.com -> two@remote.test\n")
        out, err, code = yield self.command("valias", "-d", "&two@remote.test",
                                            "info@example.com")
        self.assertEqual(code, 0)
        self.assertEqual((yield self.store_call("alias_lines", "info", "example.com")),
                         ["/var/mail/archive/Maildir/"])

    @defer.inlineCallbacks
    def test_vlimit(self):
        """The seed's session: -q sets the default user quota, -g p disables POP,
        -s shows it in upstream's layout; -D deletes the row."""
        out, err, code = yield self.command("vlimit", "-q", "52428800", "example.com")
        self.assertEqual((code, out, err), (0, b"", b""))
        yield self.command("vlimit", "-g", "p", "example.com")
        out, err, code = yield self.command("vlimit", "-s", "example.com")
        self.assertEqual(code, 0)
        lines = out.decode().splitlines()
        self.assertEqual(lines[:13], [
            "Domain Expiry Date   : Never Expires", "Password Expiry Date : Never Expires",
            "Max Domain Quota     : 0", "Max Domain Messages  : 0",
            "Default User Quota   : 52428800", "Default User Messages: 0",
            "Max Pop Accounts     : -1", "Max Aliases          : -1",
            "Max Forwards         : -1", "Max Autoresponders   : -1",
            "Max Mailinglists     : -1", "GID Flags:", "  NO_POP"])
        self.assertEqual(lines[13:15], ["Flags for non postmaster accounts:",
                                        "  pop account           : ALLOW_CREATE ALLOW_MODIFY "
                                        "ALLOW_DELETE "])
        limits = yield self.store_call("get_limits", "example.com")
        self.assertEqual((limits.defaultquota, limits.disable_pop), (52428800, 1))
        out, err, code = yield self.command("vadduser", "new@example.com", "pw")
        self.assertEqual((yield self.store_call("get_user", "new", "example.com")).pw_shell,
                         "52428800")
        out, err, code = yield self.command("vlimit", "-D", "example.com")
        self.assertEqual((code, out), (0, b"Limits deleted\n"))
        self.assertFalse((yield self.store_call("has_limits", "example.com")))
        out, err, code = yield self.command("vlimit", "-s", "nowhere.org")
        self.assertEqual((code, err), (1, b"vlimit: nowhere.org: No such domain\n"))

    @defer.inlineCallbacks
    def test_vcfilter_and_vfilter_deliveries(self):
        """The seed's vcfilter examples, then three messages through the vfilter
        program: 'failure notice' goes nowhere but to the program, a bogofilter
        spam to the Spam folder (a prefilt rule), the rest to the inbox."""
        yield self.command("vadduser", "prefilt@example.com", "xxxxxxxx")
        sink_dir = tempfile.mkdtemp(prefix="vf")      # bounce_action is char(64)
        self.addCleanup(shutil.rmtree, sink_dir)
        sink = Path(sink_dir) / "out"
        out, err, code = yield self.command(
            "vcfilter", "-i", "-t", "myfilter", "-h", "2", "-c", "0", "-k", "failure notice",
            "-f", "/NoDeliver", "-b", f"2|cat > {sink}", "bob@example.com")
        self.assertEqual((code, err), (0, b""))
        out, err, code = yield self.command(
            "vcfilter", "-i", "-t", "spamFilter", "-c", "3", "-k", "Yes, spamicity=", "-f", "Spam",
            "-b", "0", "-h", "33", "prefilt@example.com")
        self.assertEqual((code, err), (0, b""))
        maildir = self.home.domains / "example.com" / "bob" / "Maildir"
        self.assertTrue((maildir / "vfilter").exists())
        out, err, code = yield self.command("vcfilter", "-s", "bob@example.com")
        self.assertEqual(out.decode().splitlines()[2],
                         f"  2 bob@example.com               myfilter             Subject"
                         f"         Equals                     failure notice  Void"
                         f"            No|cat > {sink}")
        messages = {"m1": b"From: a@remote.test\nSubject: Failure Notice: undeliverable\n\nx\n",
                    "m2": b"From: a@remote.test\nSubject: hi\n"
                          b"X-Bogosity: Yes, spamicity=0.999616, version=1.2.4\n\ny\n",
                    "m3": b"From: a@remote.test\nSubject: hello\n\nz\n"}
        env = {"EXT": "bob", "HOST": "example.com", "SENDER": "a@remote.test",
               "DTLINE": "Delivered-To: example.com-bob@example.com\n",
               "RPLINE": "Return-Path: <a@remote.test>\n"}
        reports = []
        for name, text in messages.items():
            path = Path(self.mktemp())
            path.write_bytes(text)
            out, err, code = yield self.command("vfilter", "", "bounce-no-mailbox",
                                                stdin=path, env=env)
            self.assertEqual(code, 0, out + err)
            reports.append(out)
        self.assertEqual(reports[0], b"Mail BlackHoled\n")
        self.assertTrue(sink.read_bytes().endswith(messages["m1"]))
        [spam] = os.listdir(maildir / ".Spam" / "new")
        self.assertTrue((maildir / ".Spam" / "new" / spam).read_bytes().endswith(messages["m2"]))
        [inbox] = os.listdir(maildir / "new")
        self.assertTrue((maildir / "new" / inbox).read_bytes().endswith(messages["m3"]))
        out, err, code = yield self.command("vcfilter", "-d", "2", "bob@example.com")
        self.assertEqual(code, 0)
        self.assertFalse((maildir / "vfilter").exists())
        out, err, code = yield self.command("vcfilter", "-i", "-t", "x", "-h", "2",
                                            "-k", "y", "-f", "Spam", "bob@example.com")
        self.assertEqual(code, 1)
        self.assertIn(b"vcfilter: -c option not specified", err)
        out, err, code = yield self.command("vcfilter", "-i", "-t", "x", "-h", "2", "-c", "1",
                                            "-k", "y", "-f", "a/b", "-b", "0", "bob@example.com")
        self.assertIn(b"Invalid Char [/]", err)
        out, err, code = yield self.command("vcfilter", "-i", "-t", "x", "-h", "2", "-c", "1",
                                            "-k", "y", "-f", "Spam", "-b", "2&" + "a" * 70,
                                            "bob@example.com")
        self.assertEqual((code, err), (1, b"vcfilter: bounce action longer than 64 "
                                          b"characters\n"))

    @defer.inlineCallbacks
    def test_hostcntrl(self):
        """-i, -s, -l, -m and -d on the hostcntrl table, IP addresses from host_table."""
        yield self.store_call("set_host_ip", "mail2", "10.0.0.2")
        out, err, code = yield self.command("hostcntrl", "-i", "mail2", "carol@example.com")
        self.assertEqual((code, err), (0, b""))
        out, err, code = yield self.command("hostcntrl", "-i", "mail3", "carol@example.com")
        self.assertEqual((code, err), (1, b"hostcntrl: duplicate entry carol@example.com "
                                          b"host mail3\n"))
        out, err, code = yield self.command("hostcntrl", "-s", "carol@example.com")
        lines = out.decode().splitlines()
        self.assertEqual(lines[0], "Email                     HOST ID     IP Address       Added On")
        self.assertTrue(lines[1].startswith("carol@example.com         mail2       10.0.0.2         "))
        out, err, code = yield self.command("hostcntrl", "-l")
        self.assertTrue(out.decode().splitlines()[1].startswith(
            "carol                example.com          mail2     10.0.0.2        "))
        yield self.command("hostcntrl", "-m", "mail3", "carol@example.com")
        self.assertEqual((yield self.store_call("mailstore", "carol", "example.com")), "mail3")
        out, err, code = yield self.command("hostcntrl", "-d", "mail3", "carol@example.com")
        self.assertEqual(code, 0)
        self.assertIsNone((yield self.store_call("mailstore", "carol", "example.com")))
        out, err, code = yield self.command("hostcntrl", "-s", "carol@example.com")
        self.assertEqual((code, out), (1, b""))

    @defer.inlineCallbacks
    def test_clearopensmtp(self):
        """Relay rows older than RELAY_CLEAR_MINUTES go; newer ones stay."""
        now = time.time()
        yield self.store_call("add_relay", "bob@example.com", "10.0.0.1", now - 45 * 60)
        yield self.store_call("add_relay", "ann@example.com", "10.0.0.2", now - 5 * 60)
        out, err, code = yield self.command("clearopensmtp", env={"RELAY_CLEAR_MINUTES": "30"})
        self.assertEqual((code, out, err), (0, b"", b""))
        self.assertFalse((yield self.store_call("relay_allowed", "10.0.0.1", now, 120)))
        self.assertTrue((yield self.store_call("relay_allowed", "10.0.0.2", now, 120)))
        yield self.command("clearopensmtp", "-s")     # default 60 minutes keeps the new one
        self.assertTrue((yield self.store_call("relay_allowed", "10.0.0.2", now, 120)))


class SqliteAdminCommandTests(AdminCommandsMixin, TestCase):
    """The commands on the embedded SQLite store."""


class MysqlAdminCommandTests(MysqlHome, AdminCommandsMixin, TestCase):
    """The commands on MariaDB (control/host.mysql)."""

    @defer.inlineCallbacks
    def test_scram_forms_fit_our_tables(self):
        """pw_passwd of tables we create holds the seed's longest form
        (vpasswd -C -m SCRAM-SHA-256: keys, hex salted password, clear text, crypt)."""
        out, err, code = yield self.command("vpasswd", "-C", "-m", "SCRAM-SHA-256",
                                            "bob@example.com", "supersecret-and-long")
        self.assertEqual((code, err), (0, b""))
        stored = (yield self.store_call("get_user", "bob", "example.com")).pw_passwd
        self.assertGreater(len(stored), 255)
        self.assertTrue(schemes.verify_plain(schemes.parse_stored(stored),
                                             b"supersecret-and-long"))

    @defer.inlineCallbacks
    def test_narrow_indimail_column_refuses_not_truncates(self):
        """On IndiMail's own char(128) column a SCRAM form is refused with the
        ALTER TABLE to run, and the stored password stays as it was."""
        yield threads.deferToThread(run_sql, self.backend, [
            "ALTER TABLE indimail MODIFY pw_passwd char(128) not null"])
        before = (yield self.store_call("get_user", "bob", "example.com")).pw_passwd
        out, err, code = yield self.command("vpasswd", "-m", "SCRAM-SHA-256",
                                            "bob@example.com", "newsecret")
        self.assertNotEqual(code, 0)
        self.assertIn(b"does not fit indimail.pw_passwd (128); widen it with: ALTER TABLE "
                      b"indimail MODIFY pw_passwd varchar(512) not null", err)
        self.assertEqual((yield self.store_call("get_user", "bob", "example.com")).pw_passwd,
                         before)
        out, err, code = yield self.command("vpasswd", "-h", "SHA512", "bob@example.com", "pw2")
        self.assertEqual(code, 0, err)
