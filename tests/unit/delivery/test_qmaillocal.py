"""QMAILLOCAL: a program run instead of the built-in qmail-local, with
qmail-local's arguments, the message on stdin and qmail-lspawn's reading of
its exit code and output."""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.delivery.local import LocalDelivery
from indimail.delivery.program import classify_qmail_local

from .support import MESSAGE, FakeEnqueuer, control, make_home, queue_message, write_dotqmail

ALICE = "example.com-alice@example.com"


class ClassifyTests(SynchronousTestCase):

    def test_exit_codes(self):
        """0 success; 111, 71, 74, 75 deferral; 100 and anything else
        failure; a crash deferral (qmail-lspawn's report)."""
        self.assertEqual(classify_qmail_local(0), "success")
        for code in (111, 71, 74, 75, None):
            self.assertEqual(classify_qmail_local(code), "deferral")
        for code in (100, 1, 64, 99):
            self.assertEqual(classify_qmail_local(code), "failure")


class QmailLocalTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home)
        self.out = os.path.join(self.base, "out")
        os.mkdir(self.out)
        self.script = os.path.join(self.base, "myqmaillocal")
        self.domain = self.home.domains / "example.com"
        # a .qmail-alice the built-in deliverer would use: it must not run
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")

    def write_script(self, body: str) -> None:
        with open(self.script, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(self.script, 0o755)

    def agent(self, **env):
        base = {"PATH": os.environ.get("PATH", "/bin"), "QMAILLOCAL": self.script,
                "QMAILREMOTE": "/bin/false", **env}
        return LocalDelivery(self.home, control(self.home), FakeEnqueuer(), reactor=reactor,
                             env=base)

    def deliver(self, agent, recipient=ALICE, sender="bob@example.org", qqeh="X-Q: 1\n"):
        return agent.deliver(self.queue, self.msgid, sender, recipient, qqeh)

    async def test_arguments_and_message(self):
        """The program gets ``-- user homedir local dash ext domain sender
        defaultdelivery qqeh``, the raw queued message on stdin, runs in the
        installation's home and its output is the report; the built-in
        delivery does not happen."""
        (self.home.control / "defaultdelivery").write_text("./Maildir/\n")
        self.write_script(
            f'for a in "$@"; do printf "%s|" "$a"; done > {self.out}/args\n'
            f'cat > {self.out}/stdin\npwd > {self.out}/cwd\n'
            f'echo "${{QMAILREMOTE-unset}}" > {self.out}/remote\n'
            'echo "did 0+0+1"\nexit 0\n')
        result = await self.deliver(self.agent())
        self.assertEqual((result.status, result.report), ("success", "did 0+0+1"))
        args = open(os.path.join(self.out, "args")).read().split("|")[:-1]
        self.assertEqual(args, ["--", "example.com", str(self.domain),
                                "example.com-alice", "-", "alice", "example.com",
                                "bob@example.org", "./Maildir/", "X-Q: 1\n"])
        self.assertEqual(open(os.path.join(self.out, "stdin"), "rb").read(), MESSAGE)
        self.assertEqual(open(os.path.join(self.out, "cwd")).read().strip(),
                         str(self.home.path))
        self.assertEqual(open(os.path.join(self.out, "remote")).read().strip(), "unset")
        self.assertFalse((self.domain / "alice").exists())

    async def test_permanent(self):
        """Exit 100 bounces with the program's words."""
        self.write_script('echo "Sorry, no mailbox here by that name. (#5.1.1)"\nexit 100\n')
        result = await self.deliver(self.agent())
        self.assertEqual((result.status, result.report),
                         ("failure", "Sorry, no mailbox here by that name. (#5.1.1)"))

    async def test_temporary_codes(self):
        """Exit 111 (and 75) defer; stderr is part of the report."""
        self.write_script('echo "Unable to open file. (#4.3.0)" >&2\nexit 111\n')
        result = await self.deliver(self.agent())
        self.assertEqual((result.status, result.report),
                         ("deferral", "Unable to open file. (#4.3.0)"))
        self.write_script("exit 75\n")
        self.assertEqual((await self.deliver(self.agent())).status, "deferral")

    async def test_other_code_is_permanent(self):
        """Any other non-zero exit bounces, as qmail-lspawn reads it."""
        self.write_script("exit 3\n")
        self.assertEqual((await self.deliver(self.agent())).status, "failure")

    async def test_crash(self):
        """A program killed by a signal defers with "qmail-local crashed."."""
        self.write_script("kill -9 $$\n")
        result = await self.deliver(self.agent())
        self.assertEqual((result.status, result.report), ("deferral", "qmail-local crashed."))

    async def test_report_truncated(self):
        """Only the first 3000 characters of the output are reported."""
        self.write_script("head -c 5000 /dev/zero | tr '\\0' x\nexit 0\n")
        result = await self.deliver(self.agent())
        self.assertEqual((result.status, len(result.report)), ("success", 3000))

    async def test_missing_program_defers(self):
        """A QMAILLOCAL that cannot be run defers (never bounces) with
        qmail-lspawn's text."""
        agent = self.agent(QMAILLOCAL=os.path.join(self.base, "nonexistent"))
        result = await self.deliver(agent)
        self.assertEqual((result.status, result.report),
                         ("deferral", "Unable to run qmail-local."))

    async def test_unset_means_builtin(self):
        """Without QMAILLOCAL the built-in deliverer writes the Maildir."""
        agent = LocalDelivery(self.home, control(self.home), FakeEnqueuer(), reactor=reactor,
                              env={"PATH": os.environ.get("PATH", "/bin")})
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(len(os.listdir(self.domain / "alice" / "Maildir" / "new")), 1)
