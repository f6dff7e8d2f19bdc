"""mbox delivery: From_ line, >From quoting, trailing blank line, locking."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery.mbox import deliver_mbox, lock_exclusive
from indimail.delivery.result import DeliveryError

UF = b"From bob@example.org Thu Jan 01 00:00:00 1970\n"


class MboxTests(SynchronousTestCase):

    def setUp(self):
        self.base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.base)
        self.message = self.base / "mess"
        self.mbox = self.base / "mbox"

    def test_format(self):
        """From_ line, prefix, quoted body lines, then one blank line."""
        self.message.write_bytes(b"Subject: x\n\nFrom here\n>From there\nok\n")
        deliver_mbox(self.mbox, UF, b"Return-Path: <bob@example.org>\n", self.message)
        self.assertEqual(self.mbox.read_bytes(),
                         UF + b"Return-Path: <bob@example.org>\nSubject: x\n\n"
                         b">From here\n>>From there\nok\n\n")

    def test_partial_last_line(self):
        """A last line without newline gets one before the blank line."""
        self.message.write_bytes(b"Subject: x\n\nno newline")
        deliver_mbox(self.mbox, UF, b"", self.message)
        self.assertTrue(self.mbox.read_bytes().endswith(b"no newline\n\n"))

    def test_appends(self):
        """A second delivery is appended after the first."""
        self.message.write_bytes(b"Subject: x\n\nbody\n")
        deliver_mbox(self.mbox, UF, b"", self.message)
        deliver_mbox(self.mbox, UF, b"", self.message)
        self.assertEqual(self.mbox.read_bytes().count(UF), 2)

    def test_mode(self):
        """A new mbox is created mode 0600."""
        self.message.write_bytes(b"x\n")
        deliver_mbox(self.mbox, UF, b"", self.message)
        self.assertEqual(self.mbox.stat().st_mode & 0o777, 0o600)

    def hold_lock(self):
        """Another process holding the mbox lock until the returned cleanup."""
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, os, sys\n"
             f"fd = os.open({str(self.mbox)!r}, os.O_WRONLY)\n"
             "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
             "sys.stdout.write('L'); sys.stdout.flush()\n"
             "sys.stdin.read()\n"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def release():
            holder.stdin.close()
            holder.wait()
            holder.stdout.close()
        self.addCleanup(release)
        self.assertEqual(holder.stdout.read(1), b"L")  # the lock is held now

    def test_locked_file(self):
        """A lock held by another process makes the delivery defer, untouched."""
        self.message.write_bytes(b"x\n")
        self.mbox.write_bytes(b"")
        self.hold_lock()
        exc = self.assertRaises(DeliveryError, deliver_mbox, self.mbox, UF, b"",
                                self.message, True, 0)
        self.assertEqual(exc.result.report,
                         "File has been locked for 30 seconds straight. (#4.3.0)")
        self.assertEqual(self.mbox.read_bytes(), b"")

    def test_lock_polls_until_deadline(self):
        """lock_exclusive retries on the injected clock until 30 s have passed."""
        self.mbox.write_bytes(b"")
        self.hold_lock()
        now = [0.0]
        pauses = []

        def pause(seconds):
            pauses.append(seconds)
            now[0] += seconds

        fd = os.open(self.mbox, os.O_WRONLY)
        self.addCleanup(os.close, fd)
        self.assertRaises(DeliveryError, lock_exclusive, fd, 30, lambda: now[0], pause)
        self.assertEqual(len(pauses), 300)

    def test_lock_free_file(self):
        """An unlocked file is locked at once."""
        self.mbox.write_bytes(b"")
        fd = os.open(self.mbox, os.O_WRONLY)
        self.addCleanup(os.close, fd)
        self.assertTrue(lock_exclusive(fd, 0))
