"""Maildir delivery: unique names, tmp → new, creation of missing Maildirs."""

import os
import re
import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery.maildir import MaildirWriter, ensure_maildir, safe_hostname
from indimail.delivery.result import DeliveryError


class MaildirTests(SynchronousTestCase):

    def setUp(self):
        self.base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.base)
        self.message = self.base / "mess"
        self.message.write_bytes(b"Subject: x\n\nbody\n")
        self.writer = MaildirWriter(hostname="mx.example.com", pid=123,
                                    clock=lambda: 1700000000.25)

    def test_delivers_into_new(self):
        """The copy lands in new/ with the prefix first; tmp/ is left empty."""
        ensure_maildir(self.base / "Maildir")
        path = self.writer.deliver(self.base / "Maildir", b"Return-Path: <a@b>\n", self.message)
        self.assertEqual(path.parent, self.base / "Maildir" / "new")
        self.assertEqual(path.read_bytes(), b"Return-Path: <a@b>\nSubject: x\n\nbody\n")
        self.assertEqual(os.listdir(self.base / "Maildir" / "tmp"), [])

    def test_name_format(self):
        """new/ names are sec.I<ino>V<dev>M<usec>P<pid>Q<n>.host,S=<size>."""
        path = self.writer.deliver(self.base / "Maildir", b"", self.message)
        st = path.stat()
        self.assertEqual(
            path.name,
            f"1700000000.I{st.st_ino:x}V{st.st_dev:x}M250000P123Q1.mx.example.com,S={st.st_size}")

    def test_names_unique(self):
        """Deliveries within the same microsecond still get distinct names."""
        first = self.writer.deliver(self.base / "Maildir", b"", self.message)
        second = self.writer.deliver(self.base / "Maildir", b"", self.message)
        self.assertNotEqual(first, second)
        self.assertEqual(len(os.listdir(self.base / "Maildir" / "new")), 2)
        self.assertTrue(re.search(r"Q2\.", second.name))

    def test_creates_missing_maildir(self):
        """A missing Maildir (and its parents) is created with tmp/new/cur."""
        target = self.base / "alice" / "Maildir"
        self.writer.deliver(target, b"", self.message)
        self.assertEqual(sorted(os.listdir(target)), ["cur", "new", "tmp"])

    def test_no_create(self):
        """With creation off a missing Maildir is qmail-local's chdir error."""
        exc = self.assertRaises(DeliveryError, self.writer.deliver,
                                self.base / "none", b"", self.message, False)
        self.assertEqual(exc.result.report, "Unable to chdir to maildir. (#4.2.1)")

    def test_unreadable_message(self):
        """A missing message file is a temporary read error, tmp cleaned."""
        exc = self.assertRaises(DeliveryError, self.writer.deliver,
                                self.base / "Maildir", b"", self.base / "gone")
        self.assertEqual(exc.result.report, "Unable to read message. (#4.3.0)")
        self.assertEqual(os.listdir(self.base / "Maildir" / "tmp"), [])

    def test_safe_hostname(self):
        """Slashes and colons in the host name are encoded as 057 and 072."""
        self.assertEqual(safe_hostname("a/b:c"), "a057b072c")


class MaildirDirectoryTests(SynchronousTestCase):

    def setUp(self):
        self.base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.base)
        self.message = self.base / "msg"
        self.message.write_bytes(b"Subject: x\n\nbody\n")
        self.writer = MaildirWriter(hostname="mx.example.com", pid=123)
        self.made = []
        real = os.makedirs
        self.patch(os, "makedirs", lambda *a, **k: self.made.append(a[0]) or real(*a, **k))

    def test_existing_maildir_costs_no_mkdir(self):
        """Delivering into an existing Maildir makes no mkdir calls."""
        ensure_maildir(self.base / "Maildir")
        del self.made[:]
        self.writer.deliver(self.base / "Maildir", b"", self.message)
        self.writer.deliver(self.base / "Maildir", b"", self.message)
        self.assertEqual(self.made, [])
        self.assertEqual(len(os.listdir(self.base / "Maildir" / "new")), 2)

    def test_missing_new_is_created(self):
        """A Maildir whose new/ is missing gets it at link time."""
        (self.base / "Maildir" / "tmp").mkdir(parents=True)
        path = self.writer.deliver(self.base / "Maildir", b"", self.message)
        self.assertEqual(path.parent, self.base / "Maildir" / "new")
        self.assertEqual(sorted(os.listdir(self.base / "Maildir")), ["cur", "new", "tmp"])
