"""Deliveries as the recipient's uid/gid: in child processes when the
service runs as root, in-process otherwise."""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.delivery.local import LocalDelivery
from indimail.delivery.privileges import switch_needed

from .support import FakeEnqueuer, control, make_home, queue_message, write_dotqmail

NOBODY = 65534
ALICE = "example.com-alice@example.com"


class SwitchNeededTests(SynchronousTestCase):

    def test_rule(self):
        """Only root switches, and only to someone else."""
        self.assertTrue(switch_needed(1001, 100, euid=0, egid=0))
        self.assertTrue(switch_needed(0, 100, euid=0, egid=0))
        self.assertFalse(switch_needed(0, 0, euid=0, egid=0))
        self.assertFalse(switch_needed(1001, 100, euid=1000, egid=1000))
        self.assertFalse(switch_needed(1000, 1000, euid=1000, egid=1000))


class UidTests(TestCase):
    """The domain's home belongs to the delivery uid: ``nobody`` (65534)
    when the tests run as root, else the test's own uid."""

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        os.chmod(self.base, 0o755)
        self.root = os.geteuid() == 0
        self.uid, self.gid = (NOBODY, NOBODY) if self.root else (os.getuid(), os.getgid())
        probe = make_home(self.base)
        self.domain = probe.domains / "example.com"
        self.home = make_home(self.base, f"+example.com-:example.com:{self.uid}:{self.gid}:"
                                         f"{self.domain}:-::\n.\n")
        os.chmod(self.home.path / "queue", 0o700)   # the user cannot read the queue
        if self.root:
            os.chown(self.domain, self.uid, self.gid)
        self.queue, self.msgid = queue_message(self.home)

    def agent(self, **kw):
        return LocalDelivery(self.home, control(self.home), FakeEnqueuer(), reactor=reactor,
                             env={"PATH": os.environ.get("PATH", "/bin"),
                                  "TMPDIR": self.base}, **kw)

    def deliver(self, agent, recipient=ALICE):
        return agent.deliver(self.queue, self.msgid, "bob@example.org", recipient, None)

    def dotqmail(self, name, text):
        """A dot-qmail file owned by the user, as users keep them."""
        path = write_dotqmail(self.home, name, text)
        if self.root:
            os.chown(path, self.uid, self.gid)
        return path

    def owner(self, path):
        st = os.stat(path)
        return st.st_uid, st.st_gid

    async def test_maildir_owned_by_user(self):
        """The Maildir copy is written by the recipient's uid and gid."""
        self.dotqmail(".qmail-alice", "./alice/Maildir/\n")
        result = await self.deliver(self.agent())
        self.assertEqual((result.status, result.report), ("success", "did 1+0+0"))
        new = self.domain / "alice" / "Maildir" / "new"
        [name] = os.listdir(new)
        self.assertEqual(self.owner(new / name), (self.uid, self.gid))
        self.assertEqual(self.owner(self.domain / "alice"), (self.uid, self.gid))

    async def test_mbox_and_program_as_user(self):
        """mbox copies and |programs run as the recipient too."""
        self.dotqmail(".qmail-alice", "./mbox\n|id -u > uid.out; id -g >> uid.out\n")
        result = await self.deliver(self.agent())
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(self.owner(self.domain / "mbox"), (self.uid, self.gid))
        self.assertEqual((self.domain / "uid.out").read_text().split(),
                         [str(self.uid), str(self.gid)])
        self.assertTrue((self.domain / "mbox").read_bytes().startswith(b"From bob@example.org "))

    async def test_user_permissions_apply(self):
        """Root's privileges are not used: a directory the user may not
        write makes the delivery defer with qmail-local's text."""
        locked = self.domain / "locked"
        os.mkdir(locked, 0o755)
        self.dotqmail(".qmail-alice", "./locked/Maildir/\n")
        if not self.root:
            os.chmod(locked, 0o555)
            self.addCleanup(os.chmod, locked, 0o755)
        result = await self.deliver(self.agent())
        self.assertEqual((result.status, result.report),
                         ("deferral", "Unable to chdir to maildir. (#4.2.1)"))

    async def test_unreadable_dotqmail_refused(self):
        """A dot-qmail file the user could not read (a symlink to a private
        file of root's) is refused, not read with root's rights."""
        secret = os.path.join(self.base, "secret")
        with open(secret, "w") as f:
            f.write("&leak@example.org\n")
        os.chmod(secret, 0o600)
        if not self.root:
            os.chmod(secret, 0o000)
            self.addCleanup(os.chmod, secret, 0o600)
        os.symlink(secret, self.domain / ".qmail-alice")
        agent = self.agent()
        result = await self.deliver(agent)
        self.assertEqual(result.status, "deferral")
        self.assertIn("access denied", result.report)
        self.assertEqual(agent.enqueuer.finished, [])

    async def test_filter_and_qmaillocal_as_user(self):
        """The filter and a QMAILLOCAL program run as the recipient."""
        script = os.path.join(self.base, "ql")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\nid -u > {self.domain}/ql.uid\ncat > {self.domain}/ql.msg\n")
        os.chmod(script, 0o755)
        agent = LocalDelivery(self.home, control(self.home), FakeEnqueuer(), reactor=reactor,
                              env={"PATH": os.environ.get("PATH", "/bin"), "TMPDIR": self.base,
                                   "QMAILLOCAL": script,
                                   "FILTERARGS": f"id -u > {self.domain}/f.uid; cat"})
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual((self.domain / "f.uid").read_text().strip(), str(self.uid))
        self.assertEqual((self.domain / "ql.uid").read_text().strip(), str(self.uid))
        self.assertTrue((self.domain / "ql.msg").read_bytes().startswith(b"From: bob"))

    async def test_in_process_without_switching(self):
        """switch_users=False (a non-root service) delivers in-process as
        the service's own uid."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        result = await self.deliver(self.agent(switch_users=False))
        self.assertEqual(result.status, "success", result.report)
        new = self.domain / "alice" / "Maildir" / "new"
        [name] = os.listdir(new)
        self.assertEqual(self.owner(new / name), (os.geteuid(), os.getegid()))
