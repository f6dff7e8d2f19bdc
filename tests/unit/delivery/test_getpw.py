"""qmail-getpw's fallbacks after users/assign (the password database, then
the alias user) and qmail-local's maxdeliveredto, alone and through
LocalDelivery."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections import namedtuple
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.delivery.assign import (
    Assign, AssignEntry, GetpwError, UserResolver, lookup_alias, lookup_passwd)
from indimail.delivery.local import BAD_MAXDT, LOOPING, NO_MAILBOX, LocalDelivery, scan_int

from .support import MESSAGE, FakeEnqueuer, control, make_home, queue_message

Pw = namedtuple("Pw", "pw_name pw_uid pw_gid pw_dir")
St = namedtuple("St", "st_uid")


class FakePasswd:
    """getpwnam and stat over a dict: name → Pw, home → owner uid (or errno)."""

    def __init__(self, users, owners):
        self.users = users
        self.owners = owners
        self.asked: list[str] = []

    def getpwnam(self, name):
        self.asked.append(name)
        if name not in self.users:
            raise KeyError(name)
        return self.users[name]

    def stat(self, path):
        owner = self.owners.get(path)
        if owner is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        if isinstance(owner, OSError):
            raise owner
        return St(owner)


def passwd(**extra) -> FakePasswd:
    users = {"joe": Pw("joe", 1001, 100, "/home/joe"),
             "joe-list": Pw("joe-list", 1002, 100, "/home/list"),
             "root": Pw("root", 0, 0, "/root"),
             "daemon": Pw("daemon", 2, 2, "/usr/sbin"),
             "ghost": Pw("ghost", 1003, 100, "/gone"),
             "alias": Pw("alias", 1500, 100, "/var/alias")}
    owners = {"/home/joe": 1001, "/home/list": 1002, "/root": 0, "/usr/sbin": 0,
              "/var/alias": 1500}
    owners.update(extra)
    return FakePasswd(users, owners)


class LookupPasswdTests(SynchronousTestCase):

    def lookup(self, local, pw=None):
        pw = pw or passwd()
        return lookup_passwd(local, pw.getpwnam, pw.stat)

    def test_user_without_extension(self):
        """A plain user name: dash and ext empty, the user's uid, gid, home."""
        self.assertEqual(self.lookup("joe"), AssignEntry("joe", 1001, 100, "/home/joe", "", ""))

    def test_extension_keeps_case(self):
        """``Joe-Foo-Bar``: the user is ``joe`` (lower-cased), dash ``-`` and
        the ext the rest in its original case."""
        self.assertEqual(self.lookup("Joe-Foo-Bar"),
                         AssignEntry("joe", 1001, 100, "/home/joe", "-", "Foo-Bar"))

    def test_longest_name_first(self):
        """``joe-list-x`` belongs to the user ``joe-list``, not ``joe``."""
        self.assertEqual(self.lookup("joe-list-x"),
                         AssignEntry("joe-list", 1002, 100, "/home/list", "-", "x"))

    def test_root_ignored(self):
        """uid 0 never receives mail through the password database."""
        self.assertIsNone(self.lookup("root"))

    def test_home_not_owned_ignored(self):
        """A user whose home belongs to someone else is skipped."""
        self.assertIsNone(self.lookup("daemon"))

    def test_home_missing_ignored(self):
        """A user whose home does not exist is skipped."""
        self.assertIsNone(self.lookup("ghost-x"))

    def test_unknown(self):
        """No user for any prefix: None (the alias user comes next)."""
        self.assertIsNone(self.lookup("stranger-x"))

    def test_long_names_not_asked(self):
        """Candidates of 32 characters or more are not looked up; shorter
        ones before a ``-`` still are."""
        pw = passwd()
        self.assertIsNone(self.lookup("a" * 40 + "-b", pw))
        self.assertEqual(pw.asked, [])
        pw = passwd()
        self.assertEqual(self.lookup("joe-" + "x" * 40, pw).ext, "x" * 40)
        self.assertEqual(pw.asked, ["joe"])

    def test_temporary_stat_error_defers(self):
        """A home that cannot be looked at now (EIO, as NFS trouble) is a
        temporary failure, not a reason to fall through to the alias user."""
        pw = passwd(**{"/home/joe": OSError(errno.EIO, "I/O error")})
        self.assertRaises(GetpwError, self.lookup, "joe", pw)


class AliasAndResolverTests(SynchronousTestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        (Path(self.base) / "assign").write_text(
            "=joe:virtual:1:2:/v/joe:::\n+ab:wild:1:2:/v/w:-:p:\n.\n")
        self.pw = passwd()
        self.resolver = UserResolver(Assign(self.base), getpwnam=self.pw.getpwnam,
                                     stat=self.pw.stat)

    def test_alias_entry(self):
        """The alias user gets the whole local part as ext, dash ``-``."""
        self.assertEqual(lookup_alias("Foo.Bar", self.pw.getpwnam),
                         AssignEntry("alias", 1500, 100, "/var/alias", "-", "Foo.Bar"))

    def test_no_alias_user(self):
        """Without the alias user there is no entry."""
        self.assertIsNone(lookup_alias("x", self.pw.getpwnam, "nosuchalias"))

    def test_assign_first(self):
        """users/assign wins over the password database."""
        self.assertEqual(self.resolver.lookup("joe").user, "virtual")
        self.assertEqual(self.resolver.lookup("abX").ext, "pX")

    def test_passwd_then_alias(self):
        """Not in assign: the password database; not there: the alias user."""
        self.assertEqual(self.resolver.lookup("joe-x").user, "joe")
        self.assertEqual(self.resolver.lookup("root"),
                         AssignEntry("alias", 1500, 100, "/var/alias", "-", "root"))


class LocalFallbackTests(TestCase):
    """LocalDelivery with a fake password database whose homes are real
    directories."""

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(os.path.join(self.base, "H"))
        self.queue, self.msgid = queue_message(self.home)
        self.joe = self.mkhome("joe")
        self.alias = self.mkhome("alias")
        pw = FakePasswd({"joe": Pw("joe", 1001, 100, str(self.joe)),
                         "alias": Pw("alias", 1500, 100, str(self.alias))},
                        {str(self.joe): 1001, str(self.alias): 1500})
        self.agent = self.make_agent(pw)

    def make_agent(self, pw, alias_user="alias"):
        agent = LocalDelivery(self.home, control(self.home), FakeEnqueuer(), reactor=reactor,
                              env={}, getpwnam=pw.getpwnam, alias_user=alias_user,
                              switch_users=False)  # fake uids: deliver in-process
        agent.users = UserResolver(agent.assign, getpwnam=pw.getpwnam, stat=pw.stat,
                                   alias_user=alias_user)
        return agent

    def mkhome(self, name) -> Path:
        path = Path(self.base) / name
        for sub in ("Maildir/tmp", "Maildir/new", "Maildir/cur"):
            os.makedirs(path / sub)
        os.chmod(path, 0o755)
        return path

    def dotqmail(self, home: Path, name: str, text: str) -> None:
        (home / name).write_text(text)
        os.chmod(home / name, 0o600)

    def new(self, home: Path) -> list[bytes]:
        new = home / "Maildir" / "new"
        return [(new / n).read_bytes() for n in sorted(os.listdir(new))]

    def deliver(self, recipient, agent=None):
        return (agent or self.agent).deliver(self.queue, self.msgid, "bob@example.org",
                                             recipient)

    async def test_system_user_default_delivery(self):
        """A system user without .qmail gets the mail in ~/Maildir/ with
        qmail-local's header lines."""
        result = await self.deliver("joe@localhost")
        self.assertEqual((result.status, result.report), ("success", "did 1+0+0"))
        self.assertEqual(self.new(self.joe), [b"Return-Path: <bob@example.org>\n"
                                              b"Delivered-To: joe@localhost\n" + MESSAGE])

    async def test_system_user_extension(self):
        """``joe-Sub.Box`` uses ~joe/.qmail-sub:box (lower-cased, dots to colons)."""
        self.dotqmail(self.joe, ".qmail-sub:box", "./Maildir/\n")
        result = await self.deliver("Joe-Sub.Box@localhost")
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(len(self.new(self.joe)), 1)

    async def test_system_user_unknown_extension(self):
        """An extension without its .qmail file (nor a -default) is no mailbox."""
        result = await self.deliver("joe-nothing@localhost")
        self.assertEqual((result.status, result.report), ("failure", NO_MAILBOX))

    async def test_alias_user(self):
        """An unknown local part goes to ~alias/.qmail-<local>."""
        self.dotqmail(self.alias, ".qmail-postmaster", "./Maildir/\n")
        result = await self.deliver("PostMaster@localhost")
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(len(self.new(self.alias)), 1)

    async def test_alias_default(self):
        """~alias/.qmail-default catches every other unknown local part."""
        self.dotqmail(self.alias, ".qmail-default", "./Maildir/\n")
        result = await self.deliver("whoever@localhost")
        self.assertEqual(result.status, "success", result.report)

    async def test_alias_without_file(self):
        """The alias user without a matching file: no mailbox (permanent)."""
        result = await self.deliver("whoever@localhost")
        self.assertEqual((result.status, result.report), ("failure", NO_MAILBOX))

    async def test_no_alias_user(self):
        """No alias user on the system: no mailbox (a decision: upstream
        defers for ever)."""
        pw = FakePasswd({}, {})
        result = await self.deliver("whoever@localhost", self.make_agent(pw, "nosuch"))
        self.assertEqual((result.status, result.report), ("failure", NO_MAILBOX))

    async def test_nfs_trouble_defers(self):
        """A home that cannot be stat()ed now defers the delivery."""
        pw = FakePasswd({"joe": Pw("joe", 1001, 100, str(self.joe))},
                        {str(self.joe): OSError(errno.ETIMEDOUT, "timed out")})
        result = await self.deliver("joe@localhost", self.make_agent(pw))
        self.assertEqual((result.status, result.report),
                         ("deferral", "NFS failure in qmail-local."))

    async def test_passwd_trouble_defers(self):
        """The password database failing (ETXTBSY from getpwnam) defers with
        qmail-lspawn's text."""
        def getpwnam(name):
            raise OSError(errno.ETXTBSY, "busy")
        pw = FakePasswd({}, {})
        pw.getpwnam = getpwnam
        result = await self.deliver("joe@localhost", self.make_agent(pw))
        self.assertEqual((result.status, result.report),
                         ("deferral", "Temporary failure in qmail-lspawn."))


class MaxDeliveredToTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        dot = self.home.domains / "example.com" / ".qmail-alice"
        dot.write_text("./alice/Maildir/\n")
        os.chmod(dot, 0o600)
        self.agent = LocalDelivery(self.home, control(self.home), FakeEnqueuer(),
                                   reactor=reactor, env={})

    async def deliver(self, copies: int, setting: str | None):
        if setting is not None:
            (self.home.control / "maxdeliveredto").write_text(setting)
        line = b"Delivered-To: example.com-alice@example.com\n"
        queue, msgid = queue_message(self.home, line * copies + MESSAGE, 100 + copies)
        return await self.agent.deliver(queue, msgid, "bob@example.org",
                                        "example.com-alice@example.com")

    async def test_default_zero(self):
        """Default 0: one copy of our line is already a loop."""
        self.assertEqual((await self.deliver(1, None)).report, LOOPING)

    async def test_allows_that_many(self):
        """maxdeliveredto 2: two copies pass, three loop (permanent)."""
        self.assertEqual((await self.deliver(2, "2\n")).status, "success")
        result = await self.deliver(3, "2\n")
        self.assertEqual((result.status, result.report), ("failure", LOOPING))

    async def test_minus_one_disables(self):
        """maxdeliveredto -1 turns loop detection off."""
        self.assertEqual((await self.deliver(5, "-1\n")).status, "success")

    async def test_not_a_number_is_zero(self):
        """A value without digits reads as 0 (qmail's scan_int)."""
        self.assertEqual((await self.deliver(1, "lots\n")).report, LOOPING)

    async def test_unreadable_defers(self):
        """A control file that cannot be read defers with qmail-local's text."""
        os.mkdir(self.home.control / "maxdeliveredto")
        result = await self.deliver(0, None)
        self.assertEqual((result.status, result.report), ("deferral", BAD_MAXDT))

    def test_scan_int(self):
        """scan_int: sign and leading digits."""
        self.assertEqual([scan_int(t) for t in ("12x", "-3", "+4", "", "x1", " 7")],
                         [12, -3, 4, 0, 0, 7])
