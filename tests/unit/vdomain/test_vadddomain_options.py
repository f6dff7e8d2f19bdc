"""vadddomain's options (upstream vadddomain.c) and vdominfo's display
options, against a real home and its SQLite store."""

import os
from pathlib import Path

import cdblib
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.cli.vadddomain import parse_options
from indimail.cli.vdominfo import selected_fields
from indimail.config.init import init_home
from indimail.vdomain.admin import Admin, AdminError, DomainInfo
from indimail.vdomain.domainopts import ClusterSpec, DomainOptions
from indimail.vdomain.dominfo import render_vdominfo
from indimail.vdomain.store import open_store

NOW = 1_700_000_000
ME = (os.getuid(), os.getgid())


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class ParseOptionsTests(SynchronousTestCase):
    def test_each_option_sets_its_field(self):
        """Every upstream option lands in DomainOptions (``-h`` is our hash choice)."""
        o, scheme = parse_options([
            ("-v", ""), ("-q", "5M"), ("-l", "50"), ("-C", ""), ("-e", "x@y.org"),
            ("-B", "/b"), ("-d", "/d"), ("-i", "1234"), ("-g", "2345"), ("-f", ""),
            ("-O", ""), ("-a", ""), ("-h", "MD5")])
        self.assertEqual(o, DomainOptions(uid=1234, gid=2345, base_dir="/d", base_path="/b",
                                          users_per_level=50, bounce="x@y.org", vfilter=True,
                                          chk_rcpt=True, quota="5M", optimize=True,
                                          verbose=True))
        self.assertEqual(scheme, "MD5")
        self.assertIsNone(parse_options([("-e", "x@y.org"), ("-b", "")])[0].bounce)

    def test_etrn_and_autoturn(self):
        """-t is ETRN/ATRN, -T an AUTOTURN IP; -B does not go with either."""
        self.assertEqual(parse_options([("-t", "")])[0].etrn, 1)
        o = parse_options([("-T", "10.1.2.3")])[0]
        self.assertEqual((o.etrn, o.ipaddr), (2, "10.1.2.3"))
        e = self.assertRaises(AdminError, parse_options, [("-t", ""), ("-B", "/b")])
        self.assertEqual(e.code, 100)
        self.assertIn("option -B not valid for ETRN/ATRN/AUTORUN", str(e))
        self.assertRaises(AdminError, parse_options, [("-T", "not-an-ip")])

    def test_user_gives_uid_gid_and_directory(self):
        """-u takes uid, gid and home directory from the password file."""
        import pwd
        entry = pwd.getpwuid(os.getuid())
        o = parse_options([("-u", entry.pw_name)])[0]
        self.assertEqual((o.uid, o.gid, o.base_dir), (entry.pw_uid, entry.pw_gid, entry.pw_dir))
        e = self.assertRaises(AdminError, parse_options, [("-u", "no-such-user-here")])
        self.assertEqual((str(e), e.code), ("user no-such-user-here not found in /etc/passwd",
                                            100))

    def test_cluster_options(self):
        """-D (or -c) needs -S -U -P -p; -s sets SSL (default on); -c clusters."""
        o = parse_options([("-D", "db"), ("-S", "10.0.0.5"), ("-U", "u"), ("-P", "p"),
                           ("-p", "3307"), ("-s", "0"), ("-c", "")])[0]
        self.assertEqual(o.cluster, ClusterSpec("db", "10.0.0.5", "u", "p", 3307, False, 1))
        o = parse_options([("-D", "db"), ("-S", "s"), ("-U", "u"), ("-P", "p"), ("-p", "1")])[0]
        self.assertEqual((o.cluster.use_ssl, o.cluster.distributed), (True, 0))
        e = self.assertRaises(AdminError, parse_options, [("-c", ""), ("-S", "s")])
        self.assertIn("specify sqlserver, database, dbuser, dbpass and dbport", str(e))
        self.assertIsNone(parse_options([("-S", "s")])[0].cluster)
        self.assertEqual(self.assertRaises(AdminError, parse_options,
                                           [("-i", "x")]).code, 100)


class VdominfoRenderTests(SynchronousTestCase):
    def info(self, **kw):
        values = dict(domain="example.com", real_domain="example.com", uid=555, gid=556,
                      directory="/var/indimail/domains/example.com", users=3, limits=False,
                      aliases=["alias.com"], base_dir="/home/mail")
        values.update(kw)
        return DomainInfo(**values)

    def test_all_fields(self):
        """Upstream's banner (name padded to 25) and every line, base dir included."""
        self.assertEqual(render_vdominfo(self.info()), (
            "---- Domain example.com               -------------------------------\n"
            "    domain: example.com\n       uid: 555\n       gid: 556\n"
            "Domain Dir: /var/indimail/domains/example.com\n  Base Dir: /home/mail\n"
            "     Users: 3\n   vlimits: disabled\nAliasDomains:\nalias.com\n"))

    def test_alias_domain_shows_no_users(self):
        """An alias domain shows its name, ids and directory only."""
        text = render_vdominfo(self.info(domain="alias.com"), None)
        self.assertEqual(text.splitlines()[1:], [
            "    domain: alias.com aliased to example.com", "       uid: 555",
            "       gid: 556", "Domain Dir: /var/indimail/domains/example.com"])
        self.assertEqual(render_vdominfo(self.info(domain="alias.com"),
                                         frozenset({"users", "base"})),
                         "---- Domain alias.com ----------------\n")

    def test_selected_fields_in_upstream_order(self):
        """-t -u -b: the short banner, then uid, base dir, users and vlimits."""
        self.assertEqual(render_vdominfo(self.info(limits=True),
                                         frozenset({"users", "uid", "base"})), (
            "---- Domain example.com ----------------\n       uid: 555\n"
            "  Base Dir: /home/mail\n     Users: 3\n   vlimits: enabled\n"))

    def test_cluster_lines(self):
        """With host.cntrl: host ID and IP after gid, then the smtp_port rows."""
        info = self.info(host=("a1b2", "192.0.2.1"),
                         ports=[("192.0.2.1", "192.0.2.9", 25), ("*", "192.0.2.8", 2525)])
        out = render_vdominfo(info).splitlines()
        self.assertEqual(out[4:8], [
            "   host ID: a1b2", "   IP Addr: 192.0.2.1",
            "Ports     :192.0.2.1                     192.0.2.9@example.com"
            + " " * 24 + "25",
            "          :*                             192.0.2.8@example.com"
            + " " * 24 + "2525"])
        self.assertEqual(render_vdominfo(info, frozenset({"name", "ports"})).splitlines()[1:5],
                         ["    domain: example.com", "   host ID: a1b2",
                          "   IP Addr: 192.0.2.1", out[6]])

    def test_option_selection(self):
        """No option or -a: everything; -a before a field option narrows again."""
        self.assertIsNone(selected_fields([]))
        self.assertIsNone(selected_fields([("-n", ""), ("-a", "")]))
        self.assertEqual(selected_fields([("-a", ""), ("-n", ""), ("-p", "")]),
                         frozenset({"name", "ports"}))


class AddDomainOptionTests(TestCase):
    """Admin.add_domain with vadddomain's options, on real files and SQLite."""

    @defer.inlineCallbacks
    def setUp(self):
        self.home = init_home(Path(self.mktemp()), hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        self.store = yield open_store(self.home, {})
        self.addCleanup(self.store.close)
        self.admin = Admin(self.home, self.store, vdelivermail="/usr/sbin/vdelivermail",
                           clock=lambda: NOW)

    def assign(self) -> str:
        return (self.home.users / "assign").read_text()

    @defer.inlineCallbacks
    def test_directory_uid_gid(self):
        """-d puts the domain in <dir>/domains/<domain> (the home's name links
        there) with -i/-g in its assign line; as root the files change owner."""
        base = Path(self.mktemp()).absolute()
        uid, gid = (4321, 4322) if os.geteuid() == 0 else ME
        yield self.admin.add_domain("example.com", "pw", options=DomainOptions(
            uid=uid, gid=gid, base_dir=str(base)))
        ddir = base / "domains" / "example.com"
        self.assertIn(f"+example.com-:example.com:{uid}:{gid}:{ddir}:-::\n", self.assign())
        self.assertEqual((self.home.domains / "example.com").resolve(), ddir.resolve())
        self.assertEqual((ddir / ".qmail-default").stat().st_uid, uid)
        self.assertEqual((ddir.stat().st_uid, ddir.stat().st_gid), (uid, gid))
        postmaster = yield self.store.get_user("postmaster", "example.com")
        self.assertEqual(postmaster.pw_dir, str(ddir / "postmaster"))
        self.assertEqual((Path(postmaster.pw_dir) / "Maildir" / "new").stat().st_uid, uid)
        [info] = yield self.admin.domain_info("example.com", env={})
        self.assertEqual((info.uid, info.gid, info.directory), (uid, gid, str(ddir)))
        yield self.admin.delete_domain("example.com")
        self.assertFalse(ddir.exists())
        self.assertFalse(os.path.lexists(self.home.domains / "example.com"))
        self.assertNotIn("example.com", self.assign())

    @defer.inlineCallbacks
    def test_bounce_address_and_vfilter(self):
        """-e names the unknown users' destination in .qmail-default, -f vfilter;
        a bounce that is neither address nor path is refused before anything."""
        yield self.admin.add_domain("a.org", None, options=DomainOptions(bounce="pm@else.org"))
        self.assertEqual((self.home.domains / "a.org" / ".qmail-default").read_text(),
                         "| /usr/sbin/vdelivermail '' pm@else.org\n")
        yield self.admin.add_domain("b.org", None, options=DomainOptions(
            bounce="/var/mail/catchall/Maildir/", vfilter=True))
        self.assertEqual((self.home.domains / "b.org" / ".qmail-default").read_text(),
                         "| /usr/sbin/vfilter '' /var/mail/catchall/Maildir/\n")
        e = yield self.assertFailure(self.admin.add_domain(
            "c.org", None, options=DomainOptions(bounce="nobody")), AdminError)
        self.assertEqual((str(e), e.code), ("Invalid bounce email address nobody", 100))
        self.assertIsNone((yield self.store.real_domain("c.org")))
        self.assertFalse((self.home.domains / "c.org").exists())

    @defer.inlineCallbacks
    def test_users_per_level_and_quota(self):
        """-l sets how many users share a directory level; -q the postmaster's quota."""
        yield self.admin.add_domain("example.com", "pw", options=DomainOptions(
            users_per_level=2, quota="10M"))
        ddir = self.home.domains / "example.com"
        self.assertEqual((ddir / ".users_per_level").read_text(), "2\n")
        postmaster = yield self.store.get_user("postmaster", "example.com")
        self.assertEqual(postmaster.pw_shell, "10485760")
        yield self.admin.add_user("a@example.com", "pw", encrypted=True)
        third = yield self.admin.add_user("b@example.com", "pw", encrypted=True)
        self.assertEqual(third.pw_dir, str(ddir / "0" / "b"))
        yield self.assertFailure(self.admin.add_domain(
            "x.org", "pw", options=DomainOptions(quota="lots")), AdminError)
        self.assertIsNone((yield self.store.real_domain("x.org")))

    @defer.inlineCallbacks
    def test_base_path(self):
        """-B: users' directories go to <base>/<domain>/, recorded in .base_path;
        vdeluser and vdeldomain remove them there."""
        base = Path(self.mktemp()).absolute() / "mail"
        yield self.admin.add_domain("example.com", "pw", options=DomainOptions(
            base_path=str(base)))
        self.assertEqual((self.home.domains / "example.com" / ".base_path").read_text(),
                         f"{base}\n")
        bob = yield self.admin.add_user("bob@example.com", "pw", encrypted=True)
        self.assertEqual(bob.pw_dir, str(base / "example.com" / "bob"))
        self.assertTrue((base / "example.com" / "postmaster" / "Maildir" / "cur").is_dir())
        [info] = yield self.admin.domain_info("example.com", env={})
        self.assertEqual(info.base_dir, str(base))
        yield self.admin.delete_user("bob@example.com")
        self.assertFalse(Path(bob.pw_dir).exists())
        yield self.admin.delete_domain("example.com")
        self.assertFalse((base / "example.com").exists())

    @defer.inlineCallbacks
    def test_base_dir_default_is_the_domains_directory(self):
        """Without -B vdominfo's base directory is where the domain directory sits."""
        yield self.admin.add_domain("example.com", None)
        [info] = yield self.admin.domain_info("example.com", env={})
        self.assertEqual(info.base_dir, str(self.home.domains))

    @defer.inlineCallbacks
    def test_recipient_check_and_locals(self):
        """-C adds chkrcptdomains; the domain leaves locals; vdeldomain takes it out."""
        with open(self.home.control / "locals", "a") as f:
            f.write("example.com\n")
        yield self.admin.add_domain("example.com", None, options=DomainOptions(chk_rcpt=True))
        self.assertEqual(lines(self.home.control / "chkrcptdomains"), ["example.com"])
        self.assertNotIn("example.com", lines(self.home.control / "locals"))
        yield self.admin.delete_domain("example.com")
        self.assertEqual(lines(self.home.control / "chkrcptdomains"), [])

    @defer.inlineCallbacks
    def test_optimize_leaves_users_cdb(self):
        """-O skips compiling users/cdb; the next add without it compiles all."""
        cdb = self.home.users / "cdb"
        yield self.admin.add_domain("a.org", None, options=DomainOptions(optimize=True))
        self.assertFalse(cdb.exists())
        yield self.admin.add_domain("b.org", None)
        reader = cdblib.Reader(cdb.read_bytes())
        self.assertEqual([reader.get(k) is not None for k in (b"!a.org-", b"!b.org-")],
                         [True, True])

    @defer.inlineCallbacks
    def test_etrn_domain(self):
        """-t: a Maildir under <home>/autoturn, assign/virtualdomains/rcpthosts
        and etrnhosts lines, no database row and no postmaster; vdeldomain undoes it."""
        yield self.admin.add_domain("etrn.test", "pw", options=DomainOptions(etrn=1))
        ddir = self.home.path / "autoturn" / "etrn.test"
        self.assertTrue((ddir / "Maildir" / "new").is_dir())
        self.assertEqual((ddir / ".qmail-default").read_text(), f"{ddir}/Maildir/\n")
        self.assertIn(f"+etrn.test-:etrn.test:{ME[0]}:{ME[1]}:{ddir}:-::\n", self.assign())
        self.assertIn("etrn.test:etrn.test", lines(self.home.control / "virtualdomains"))
        self.assertIn("etrn.test", lines(self.home.control / "rcpthosts"))
        self.assertEqual(lines(self.home.control / "etrnhosts"), ["etrn.test"])
        self.assertIsNone((yield self.store.real_domain("etrn.test")))
        self.assertFalse(os.path.lexists(self.home.domains / "etrn.test"))
        e = yield self.assertFailure(self.admin.add_domain(
            "etrn.test", None, options=DomainOptions(etrn=1)), AdminError)
        self.assertEqual(str(e), "domain etrn.test exists")
        yield self.admin.delete_domain("etrn.test")
        self.assertFalse(ddir.exists())
        self.assertEqual(lines(self.home.control / "etrnhosts"), [])
        self.assertNotIn("etrn.test", self.assign())

    @defer.inlineCallbacks
    def test_autoturn_domain(self):
        """-T ip: the autoturn assign line, ``domain:autoturn-ip`` in
        virtualdomains and ``.qmail-<ip with colons>-default`` to its Maildir."""
        yield self.admin.add_domain("auto.test", None, options=DomainOptions(
            etrn=2, ipaddr="10.1.2.3"))
        turn = self.home.path / "autoturn"
        self.assertIn(f"+autoturn-:indimail:{ME[0]}:{ME[1]}:{turn}:-::\n", self.assign())
        self.assertNotIn("+auto.test-", self.assign())
        self.assertIn("auto.test:autoturn-10.1.2.3", lines(self.home.control / "virtualdomains"))
        self.assertEqual((turn / ".qmail-10:1:2:3-default").read_text(), "./10.1.2.3/Maildir/\n")
        self.assertTrue((turn / "10.1.2.3" / "Maildir" / "tmp").is_dir())
        self.assertEqual(lines(self.home.control / "etrnhosts"), ["auto.test"])

    @defer.inlineCallbacks
    def test_domain_info_cluster_lines(self):
        """With control/host.cntrl vdominfo gets this node's host ID and IP
        (HOSTID, localiphost) and the domain's smtp_port rows."""
        yield self.admin.add_domain("example.com", None)
        (self.home.control / "host.cntrl").write_text("localhost\n")
        (self.home.control / "localiphost").write_text("192.0.2.1\n")
        yield self.store.set_smtp_port("192.0.2.9", "192.0.2.1", "example.com", 2525)
        [info] = yield self.admin.domain_info("example.com", env={"HOSTID": "node7"})
        self.assertEqual((info.host, info.ports),
                         (("node7", "192.0.2.1"), [("192.0.2.1", "192.0.2.9", 2525)]))
        (self.home.control / "host.cntrl").unlink()
        [info] = yield self.admin.domain_info("example.com", env={"HOSTID": "node7"})
        self.assertEqual((info.host, info.ports), (None, []))
