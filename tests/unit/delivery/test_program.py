"""Program deliveries: /bin/sh via spawnProcess, exit-code mapping."""

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.delivery.program import classify, open_message, run_program


class ClassifyTests(SynchronousTestCase):

    def test_codes(self):
        """0 ok, 99 ok-and-stop, the permanent list, everything else temporary."""
        self.assertEqual(classify(0), ("success", False))
        self.assertEqual(classify(99), ("success", True))
        for code in (100, 64, 65, 70, 76, 77, 78, 112):
            self.assertEqual(classify(code), ("failure", False), code)
        for code in (1, 111, 75, 71, 101):
            self.assertEqual(classify(code), ("deferral", False), code)
        self.assertEqual(classify(None), ("deferral", False))


class RunTests(TestCase):

    def setUp(self):
        self.base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.base)
        self.message = self.base / "mess"
        self.message.write_bytes(b"Subject: hello\n\nbody\n")

    def run_sh(self, command, env=None):
        fd = open_message(self.message)
        d = run_program(reactor, command, env or {"PATH": os.environ.get("PATH", "/bin")},
                        str(self.base), fd)
        os.close(fd)
        return d

    async def test_message_on_stdin(self):
        """The program reads the message on stdin and runs in the home dir."""
        outcome = await self.run_sh("cat > copy; pwd")
        self.assertEqual((outcome.status, outcome.exit_code), ("success", 0))
        self.assertEqual((self.base / "copy").read_bytes(), b"Subject: hello\n\nbody\n")
        self.assertEqual(outcome.output, str(self.base))

    async def test_permanent(self):
        """Exit 100 is a permanent failure; what it printed is the report."""
        outcome = await self.run_sh("echo no such list; exit 100")
        self.assertEqual((outcome.status, outcome.output), ("failure", "no such list"))

    async def test_temporary(self):
        """Exit 111 is temporary."""
        outcome = await self.run_sh("echo busy >&2; exit 111")
        self.assertEqual((outcome.status, outcome.output), ("deferral", "busy"))

    async def test_stop(self):
        """Exit 99 succeeds and asks to stop."""
        outcome = await self.run_sh("exit 99")
        self.assertEqual((outcome.status, outcome.stop), ("success", True))

    async def test_environment(self):
        """The given environment reaches the program."""
        outcome = await self.run_sh('echo "$SENDER"', {"SENDER": "bob@example.org"})
        self.assertEqual(outcome.output, "bob@example.org")

    async def test_killed(self):
        """A program killed by a signal is a temporary crash."""
        outcome = await self.run_sh("kill -9 $$")
        self.assertEqual(outcome.status, "deferral")
        self.assertIn("crashed", outcome.output)
