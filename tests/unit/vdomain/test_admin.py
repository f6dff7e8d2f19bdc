"""The admin operations (vadddomain, vadduser, vpasswd, ...) on a SQLite store."""

import os
import time
from pathlib import Path

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.auth import schemes
from indimail.cli.qmail_newu import compile_assign
from indimail.cli.vuserinfo import select
from indimail.config.init import init_home
from indimail.vdomain import admin as vadmin
from indimail.vdomain.admin import Admin, AdminError, password_options, user_subdir
from indimail.vdomain.records import VLimits, VUser
from indimail.vdomain.store import open_store

NOW = 1_700_000_000


class PureTests(SynchronousTestCase):
    def test_user_subdir_small_domain(self):
        """The first 100 users of a domain live directly in the domain directory."""
        self.assertEqual(user_subdir(0), "")
        self.assertEqual(user_subdir(99), "")

    def test_user_subdir_hashes_past_the_first_level(self):
        """Further users go to 0..z, then two levels 0/0.., 100 users each."""
        self.assertEqual(user_subdir(100), "0")
        self.assertEqual(user_subdir(199), "0")
        self.assertEqual(user_subdir(200), "1")
        self.assertEqual(user_subdir(100 + 61 * 100), "z")
        self.assertEqual(user_subdir(100 + 62 * 100), "0/0")
        self.assertEqual(user_subdir(100 + 63 * 100), "0/1")

    def test_hash_names(self):
        """vuserinfo names the scheme of a stored password as upstream does."""
        self.assertEqual(vadmin.password_hash_name("$1$ab$cd"), "MD5")
        self.assertEqual(vadmin.password_hash_name("$5$ab$cd"), "SHA256")
        self.assertEqual(vadmin.password_hash_name("$6$ab$cd"), "SHA512")
        self.assertEqual(vadmin.password_hash_name("{SCRAM-SHA-1}4096,x"), "SCRAM-SHA-1")
        self.assertEqual(vadmin.password_hash_name("{SCRAM-SHA-256}4096,x"), "SCRAM-SHA-256")
        self.assertEqual(vadmin.password_hash_name("supersecret"), "DES")

    def test_password_options(self):
        """-h, -m, -C and -e map to scheme, cram and encrypted; bad names are errors."""
        self.assertEqual(password_options([]), {"scheme": "SHA512-CRYPT", "cram": False,
                                                "encrypted": False})
        self.assertEqual(password_options([("-h", "SHA256")])["scheme"], "SHA256-CRYPT")
        self.assertEqual(password_options([("-h", "MD5")])["scheme"], "MD5")
        opts = password_options([("-m", "SCRAM-SHA-1"), ("-C", "")])
        self.assertEqual((opts["scheme"], opts["cram"]), ("SCRAM-SHA-1", True))
        self.assertTrue(password_options([("-e", "")])["encrypted"])
        self.assertEqual(self.assertRaises(AdminError, password_options,
                                           [("-h", "ROT13")]).code, 100)
        self.assertRaises(AdminError, password_options, [("-m", "SCRAM-MD5")])

    def test_make_password_forms(self):
        """Each choice stores the form the seed shows, and it verifies."""
        for scheme, prefix in (("SHA512-CRYPT", "$6$"), ("SHA256-CRYPT", "$5$"),
                               ("MD5", "$1$")):
            stored = vadmin.make_password("supersecret", scheme)
            self.assertTrue(stored.startswith(prefix), stored)
            self.assertTrue(schemes.verify_plain(schemes.parse_stored(stored), b"supersecret"))
        self.assertEqual(vadmin.make_password("supersecret", encrypted=True), "supersecret")
        scram = vadmin.make_password("supersecret", "SCRAM-SHA-256", cram=True)
        self.assertTrue(scram.startswith("{SCRAM-SHA-256}4096,"))
        self.assertIn(":supersecret,$5$", scram)
        self.assertTrue(schemes.parse_stored(scram).can_verify_cram())
        self.assertEqual(vadmin.make_password("s", cram=True), "{CRAM}s")

    def test_render_user_layout(self):
        """vuserinfo's lines, labels padded to the seed's 14 columns, flags listed."""
        user = VUser("manny", "example.com", "$5$salt$hash", 1, 0x02 | 0x20, "manny",
                     "/nonexistent/manny", "524288000")
        text = vadmin.render_user(user, exists=False, usage=(10, 2), last={},
                                  database=["Sql Database  : db"], now=NOW)
        lines = text.splitlines()
        self.assertEqual(lines[:9], [
            "name          : manny@example.com",
            "passwd        : $5$salt$hash (SHA256)",
            "uid           : 1",
            "gid           : 34",
            "                -pop access closed",
            "                -user not allowed to relay mail",
            "gecos         : manny",
            "dir           : /nonexistent/manny (missing)",
            "quota         : 524288000 [500.00 MiB]"])
        self.assertIn("curr quota    : 10S,2C", lines)
        self.assertIn("last  auth    : Not yet logged in", lines)
        self.assertIn("PassChange    : Not yet Changed", lines)
        self.assertEqual(select(text, [("-d", "")]),
                         "dir           : /nonexistent/manny (missing)\n")
        self.assertEqual(select(text, [("-g", "")]).count("\n"), 3)

    def test_render_user_logins(self):
        """Last POP3/IMAP logins give ``last auth`` and the per-service lines."""
        user = VUser("a", "b.c", "x", pw_shell="NOQUOTA", inactive=True)
        last = {"add": (NOW - 86400 - 3661, "add", "127.0.0.1"),
                "pop3": (NOW - 60, "pop3", "10.0.0.1")}
        lines = vadmin.render_user(user, exists=True, usage=(0, 0), last=last, database=[],
                                   now=NOW).splitlines()
        pop = f"(10.0.0.1) {time.asctime(time.localtime(NOW - 60))}"
        self.assertIn("quota         : unlimited", lines)
        self.assertIn("Table Name    : indibak", lines)
        self.assertIn("Days inact    : 0 days 00 Hrs 01 Mins 00 Secs", lines)
        self.assertIn(f"last  auth    : {pop}", lines)
        self.assertIn(f"last  POP3    : {pop}", lines)
        self.assertIn("last  IMAP    : Not yet logged in", lines)

    def test_quota_in_gib(self):
        """Quotas of 1 GiB and more are shown in GiB."""
        user = VUser("a", "b.c", "x", pw_shell="2147483648")
        self.assertIn("quota         : 2147483648 [2.00 GiB]",
                      vadmin.render_user(user, exists=True, usage=(0, 0), last={},
                                         database=[], now=NOW))


class AdminTests(TestCase):
    """The operations against a real home and its SQLite store."""

    @defer.inlineCallbacks
    def setUp(self):
        self.home = init_home(Path(self.mktemp()), hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        self.store = yield open_store(self.home, {})
        self.addCleanup(self.store.close)
        self.admin = Admin(self.home, self.store, uid=1000, gid=1001,
                           vdelivermail="/usr/sbin/vdelivermail", clock=lambda: NOW)

    @defer.inlineCallbacks
    def test_add_domain_writes_files_and_postmaster(self):
        """vadddomain: directory, .qmail-default, control lines, assign + cdb, postmaster."""
        yield self.admin.add_domain("Example.COM", "secret")
        ddir = self.home.domains / "example.com"
        self.assertEqual((ddir / ".qmail-default").read_text(),
                         "| /usr/sbin/vdelivermail '' bounce-no-mailbox\n")
        self.assertIn("example.com:example.com",
                      (self.home.control / "virtualdomains").read_text().splitlines())
        self.assertIn("example.com", (self.home.control / "rcpthosts").read_text().splitlines())
        assign = (self.home.users / "assign").read_bytes()
        self.assertIn(f"+example.com-:example.com:{os.getuid()}:{os.getgid()}:{ddir}:-::",
                      assign.decode())
        self.assertTrue(assign.endswith(b".\n"))
        self.assertTrue((self.home.users / "cdb").exists())
        self.assertIn(b"!example.com-", dict(compile_assign(assign)))
        postmaster = yield self.store.get_user("postmaster", "example.com")
        self.assertEqual(postmaster.pw_dir, str(ddir / "postmaster"))
        self.assertTrue(postmaster.pw_passwd.startswith("$6$"))
        self.assertTrue((ddir / "postmaster" / "Maildir" / "new").is_dir())

    @defer.inlineCallbacks
    def test_add_domain_twice_and_bad_name(self):
        """An existing domain or a malformed name is refused."""
        yield self.admin.add_domain("example.com", None)
        error = yield self.assertFailure(self.admin.add_domain("example.com", "x"), AdminError)
        self.assertEqual(str(error), "domain example.com exists")
        yield self.assertFailure(self.admin.add_domain("bad domain", "x"), AdminError)

    @defer.inlineCallbacks
    def test_delete_domain(self):
        """vdeldomain removes rows, directory and every control line it added."""
        yield self.admin.add_domain("example.com", "secret")
        yield self.admin.delete_domain("example.com")
        self.assertFalse((self.home.domains / "example.com").exists())
        self.assertNotIn("example.com", (self.home.control / "rcpthosts").read_text())
        self.assertEqual((self.home.control / "virtualdomains").read_text(), "")
        self.assertEqual((self.home.users / "assign").read_text(), ".\n")
        self.assertIsNone((yield self.store.get_user("postmaster", "example.com")))
        yield self.assertFailure(self.admin.delete_domain("example.com"), AdminError)

    @defer.inlineCallbacks
    def test_delete_alias_domain(self):
        """vdeldomain of an alias domain drops only the alias; the real domain stays."""
        yield self.admin.add_domain("example.com", None)
        yield self.store.add_alias_domain("alias.com", "example.com")
        yield self.admin.delete_domain("alias.com")
        self.assertIsNone((yield self.store.real_domain("alias.com")))
        self.assertEqual((yield self.store.real_domain("example.com")), "example.com")
        self.assertTrue((self.home.domains / "example.com" / ".qmail-default").exists())

    @defer.inlineCallbacks
    def test_domain_info(self):
        """vdominfo: uid/gid and directory of the assign line, user count,
        vlimits, alias domains; without an assign line the admin's uid/gid."""
        yield self.admin.add_domain("example.com", "secret")
        yield self.store.add_alias_domain("alias.com", "example.com")
        [info] = yield self.admin.domain_info("example.com")
        self.assertEqual(info.render(), (
            f"    domain: example.com\n       uid: {os.getuid()}\n       gid: {os.getgid()}\n"
            f"Domain Dir: {self.home.domains / 'example.com'}\n"
            "     Users: 1\n   vlimits: disabled\nAliasDomains:\nalias.com\n"))
        [alias] = yield self.admin.domain_info("alias.com")
        self.assertIn("    domain: alias.com aliased to example.com\n", alias.render())
        yield self.store.add_domain("bare.org")
        everything = yield self.admin.domain_info()
        self.assertEqual([i.domain for i in everything], ["bare.org", "example.com"])
        self.assertEqual((everything[0].uid, everything[0].gid), (1000, 1001))
        yield self.assertFailure(self.admin.domain_info("nowhere.org"), AdminError)

    @defer.inlineCallbacks
    def test_add_user_defaults(self):
        """vadduser: gecos is the name, uid 1, Maildir made, add time recorded."""
        yield self.admin.add_domain("example.com", None)
        user = yield self.admin.add_user("Bob@example.com", "pw")
        self.assertEqual((user.pw_name, user.pw_uid, user.pw_gid, user.pw_gecos, user.pw_shell),
                         ("bob", 1, 0, "bob", "NOQUOTA"))
        self.assertTrue((Path(user.pw_dir) / "Maildir" / "cur").is_dir())
        self.assertEqual((yield self.store.last_auth("bob", "example.com", "add"))[0], NOW)
        stored = yield self.store.get_user("bob", "example.com")
        self.assertTrue(schemes.verify_plain(schemes.parse_stored(stored.pw_passwd), b"pw"))

    @defer.inlineCallbacks
    def test_add_user_quota_from_vlimits_and_options(self):
        """The domain's default quota applies unless -q gives one; -c sets gecos."""
        yield self.admin.add_domain("example.com", None)
        yield self.store.set_limits(VLimits("example.com", defaultquota=5242880,
                                            defaultmaxmsgcount=100))
        user = yield self.admin.add_user("a@example.com", "pw", gecos="A Person")
        self.assertEqual((user.pw_shell, user.pw_gecos), ("5242880,100", "A Person"))
        user = yield self.admin.add_user("b@example.com", "pw", quota="10M")
        self.assertEqual(user.pw_shell, "10485760")

    @defer.inlineCallbacks
    def test_add_user_hashes_after_100_users(self):
        """The 101st user of a domain goes to the hashed subdirectory 0/."""
        yield self.admin.add_domain("example.com", None)
        yield self.store.set_dir_control("example.com", cur_users=100)
        user = yield self.admin.add_user("late@example.com", "pw", encrypted=True)
        self.assertEqual(user.pw_dir, str(self.home.domains / "example.com" / "0" / "late"))
        self.assertEqual((yield self.store.dir_control("example.com"))["cur_users"], 101)

    @defer.inlineCallbacks
    def test_add_user_errors(self):
        """Unknown domain, existing user and a missing domain part are refused."""
        yield self.admin.add_domain("example.com", None)
        yield self.admin.add_user("bob@example.com", "pw", encrypted=True)
        e = yield self.assertFailure(self.admin.add_user("bob@example.com", "pw"), AdminError)
        self.assertEqual(str(e), "username bob@example.com exists")
        e = yield self.assertFailure(self.admin.add_user("bob@else.org", "pw"), AdminError)
        self.assertEqual(str(e), "else.org: No such domain")
        yield self.assertFailure(self.admin.add_user("bob", "pw"), AdminError)

    @defer.inlineCallbacks
    def test_add_user_in_alias_domain_goes_to_real_domain(self):
        """A user added under an alias domain is created in the real domain."""
        yield self.admin.add_domain("example.com", None)
        yield self.store.add_alias_domain("alias.com", "example.com")
        user = yield self.admin.add_user("c@alias.com", "pw", encrypted=True)
        self.assertEqual(user.pw_domain, "example.com")

    @defer.inlineCallbacks
    def test_delete_user(self):
        """vdeluser removes the row and the home directory; a second time fails."""
        yield self.admin.add_domain("example.com", None)
        user = yield self.admin.add_user("bob@example.com", "pw", encrypted=True)
        yield self.admin.delete_user("bob@example.com")
        self.assertFalse(Path(user.pw_dir).exists())
        self.assertIsNone((yield self.store.get_user("bob", "example.com")))
        e = yield self.assertFailure(self.admin.delete_user("bob@example.com"), AdminError)
        self.assertEqual(str(e), "bob@example.com: No such user")

    @defer.inlineCallbacks
    def test_set_password(self):
        """vpasswd stores the chosen form and records the change time."""
        yield self.admin.add_domain("example.com", None)
        yield self.admin.add_user("bob@example.com", "old", encrypted=True)
        yield self.admin.set_password("bob@example.com", "new", scheme="SCRAM-SHA-1")
        stored = (yield self.store.get_user("bob", "example.com")).pw_passwd
        self.assertTrue(stored.startswith("{SCRAM-SHA-1}4096,"))
        self.assertTrue(schemes.verify_plain(schemes.parse_stored(stored), b"new"))
        self.assertEqual((yield self.store.last_auth("bob", "example.com", "pass"))[0], NOW)
        yield self.admin.set_password("bob@example.com", "clear", encrypted=True)
        self.assertEqual((yield self.store.get_user("bob", "example.com")).pw_passwd, "clear")
        yield self.assertFailure(self.admin.set_password("no@example.com", "x"), AdminError)

    @defer.inlineCallbacks
    def test_user_info(self):
        """vuserinfo shows the stored fields, the Maildir usage and the times."""
        yield self.admin.add_domain("example.com", None)
        user = yield self.admin.add_user("bob@example.com", "supersecret", encrypted=True)
        (Path(user.pw_dir) / "Maildir" / "new" / "1.msg").write_bytes(b"x" * 5)
        yield self.admin.set_password("bob@example.com", "other", encrypted=True)
        text = yield self.admin.user_info("bob@example.com")
        lines = text.splitlines()
        self.assertEqual(lines[0], "name          : bob@example.com")
        self.assertEqual(lines[1], "passwd        : other (DES)")
        self.assertIn(f"dir           : {user.pw_dir}", lines)
        self.assertIn("curr quota    : 5S,1C", lines)
        self.assertIn("Table Name    : indimail", lines)
        self.assertTrue(any(line.startswith("PassChange    : (127.0.0.1) ") for line in lines))
        self.assertTrue(any(line.startswith("Added On      : (127.0.0.1) ") for line in lines))
        self.assertEqual(lines[-1], "Delivery Time : No Mails Delivered yet / "
                                    "Per Day Limit not configured")
