"""Dot-qmail lookup order and line parsing (qmail-local's qmesearch)."""

import os
import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery import dotqmail
from indimail.delivery.dotqmail import Instruction, find_dotqmail, parse, search_order
from indimail.delivery.result import DeliveryError


class SearchOrderTests(SynchronousTestCase):

    def test_plain_ext(self):
        """``foo-bar`` tries .qmail-foo-bar, -foo-default, -default."""
        self.assertEqual([n for n, _ in search_order("-", "foo-bar")],
                         [".qmail-foo-bar", ".qmail-foo-default", ".qmail-default"])

    def test_default_values(self):
        """Each -default candidate sets DEFAULT to the part it stands for."""
        self.assertEqual(search_order("-", "foo-bar"),
                         [(".qmail-foo-bar", None), (".qmail-foo-default", "bar"),
                          (".qmail-default", "foo-bar")])

    def test_lowercase_and_dots(self):
        """The extension is lower-cased and dots become colons."""
        self.assertEqual(search_order("-", "John.Doe")[0][0], ".qmail-john:doe")

    def test_empty_ext(self):
        """An empty extension looks for .qmail<dash> then <dash>default."""
        self.assertEqual([n for n, _ in search_order("", "")], [".qmail", ".qmaildefault"])


class FindTests(SynchronousTestCase):

    def setUp(self):
        self.home = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.home)

    def write(self, name, text="./Maildir/\n", mode=0o600):
        (self.home / name).write_text(text)
        os.chmod(self.home / name, mode)

    def test_exact_file_first(self):
        """The exact file wins over -default files."""
        self.write(".qmail-foo-bar", "&a@b\n")
        self.write(".qmail-foo-default")
        found = find_dotqmail(self.home, "-", "foo-bar")
        self.assertEqual((found.path.name, found.content, found.default),
                         (".qmail-foo-bar", b"&a@b\n", None))

    def test_falls_back_to_foo_default(self):
        """Without the exact file, .qmail-foo-default applies, DEFAULT=bar."""
        self.write(".qmail-foo-default")
        self.write(".qmail-default")
        found = find_dotqmail(self.home, "-", "foo-bar")
        self.assertEqual((found.path.name, found.default), (".qmail-foo-default", "bar"))

    def test_falls_back_to_default(self):
        """Last comes .qmail-default with the whole extension as DEFAULT."""
        self.write(".qmail-default")
        found = find_dotqmail(self.home, "-", "Foo-Bar")
        self.assertEqual((found.path.name, found.default), (".qmail-default", "Foo-Bar"))

    def test_nothing_found(self):
        """No candidate file: None."""
        self.assertIsNone(find_dotqmail(self.home, "-", "alice"))

    def test_directory_is_not_a_file(self):
        """A directory named like a dot-qmail file is skipped."""
        os.mkdir(self.home / ".qmail-alice")
        self.assertIsNone(find_dotqmail(self.home, "-", "alice"))

    def test_writable_file_refused(self):
        """A world-writable dot-qmail file is a temporary error."""
        self.write(".qmail-alice", mode=0o666)
        exc = self.assertRaises(DeliveryError, find_dotqmail, self.home, "-", "alice")
        self.assertEqual(exc.result.status, "deferral")
        self.assertIn("writable", exc.result.report)

    def test_fifo_is_not_a_file_and_does_not_hang(self):
        """A FIFO named like a dot-qmail file is skipped at once (it is
        opened without blocking, so no writer is needed for the open)."""
        os.mkfifo(self.home / ".qmail-alice")
        self.write(".qmail-default", "./Maildir/\n")
        found = find_dotqmail(self.home, "-", "alice")
        self.assertEqual(found.path.name, ".qmail-default")

    def test_large_file_read_whole(self):
        """A dot-qmail file larger than one read comes back whole."""
        text = "".join(f"&user{n}@example.com\n" for n in range(10000))
        self.write(".qmail-alice", text)
        self.assertEqual(find_dotqmail(self.home, "-", "alice").content, text.encode())

    def test_x_bit_means_forward_only(self):
        """The owner-x bit marks the file forward-only."""
        self.write(".qmail-alice", mode=0o700)
        self.assertTrue(find_dotqmail(self.home, "-", "alice").forward_only)


class ParseTests(SynchronousTestCase):

    def test_kinds(self):
        """Each line kind is recognised, comments skipped, blanks trimmed."""
        text = ("# comment\n./Maildir/\n/var/mail/alice\n|preline cat  \n"
                "&bob@example.org\ncarol@example.org\n:label\n+list\n")
        self.assertEqual(parse(text), [
            Instruction(dotqmail.MAILDIR, "./Maildir/"),
            Instruction(dotqmail.MBOX, "/var/mail/alice"),
            Instruction(dotqmail.PROGRAM, "preline cat"),
            Instruction(dotqmail.FORWARD, "bob@example.org"),
            Instruction(dotqmail.FORWARD, "carol@example.org"),
            Instruction(dotqmail.LABEL, "label"),
            Instruction(dotqmail.LIST, ""),
        ])

    def test_branches(self):
        """``?label command`` and ``?label`` become branch instructions."""
        self.assertEqual(parse("./Maildir/\n?spam\tgrep -q x\n?out\n:spam\n"), [
            Instruction(dotqmail.MAILDIR, "./Maildir/"),
            Instruction(dotqmail.BRANCH, "grep -q x", "spam"),
            Instruction(dotqmail.BRANCH, "", "out"),
            Instruction(dotqmail.LABEL, "spam"),
        ])

    def test_missing_final_newline(self):
        """The last line counts even without a newline."""
        self.assertEqual(parse("./Mbox"), [Instruction(dotqmail.MBOX, "./Mbox")])

    def test_blank_first_line(self):
        """A blank first line is refused, as qmail-local does."""
        exc = self.assertRaises(DeliveryError, parse, "\n./Maildir/\n")
        self.assertIn("first line of .qmail file is blank", exc.result.report)

    def test_later_blank_lines_skipped(self):
        """Blank lines after the first are ignored."""
        self.assertEqual(len(parse("./Maildir/\n\n\n&a@b\n")), 2)
