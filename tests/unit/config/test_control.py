import os

import cdblib
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.cdb import control_keys, make_control_cdb, write_cdb
from indimail.config.control import ControlFileError, ControlFiles
from indimail.config.files import write_atomic, write_new

from .helpers import tempdir


class QmailCdbTests(SynchronousTestCase):
    def test_keys_like_qmail_cdb(self):
        """One key per line, lower-cased, trailing blanks removed, # lines and blank lines skipped."""
        self.assertEqual(control_keys(b"Example.COM  \n#comment\n\n.Sub.Example.org\t\nlast"),
                         [b"example.com", b".sub.example.org", b"last"])

    def test_make_control_cdb(self):
        """make_control_cdb writes NAME.cdb with empty values and keeps the text file."""
        d = tempdir(self)
        (d / "rcpthosts").write_bytes(b"Example.com\nexample.org\n")
        target = make_control_cdb(d, "rcpthosts")
        self.assertEqual(target, d / "rcpthosts.cdb")
        reader = cdblib.Reader(target.read_bytes())
        self.assertEqual(sorted(reader.items()), [(b"example.com", b""), (b"example.org", b"")])
        self.assertTrue((d / "rcpthosts").exists())
        self.assertEqual(sorted(p.name for p in d.iterdir()), ["rcpthosts", "rcpthosts.cdb"])

    def test_cdb_round_trip(self):
        """write_cdb output reads back with every record, duplicates in order."""
        d = tempdir(self)
        write_cdb(d / "x.cdb", [(b"k", b"1"), (b"k", b"2"), (b"other", b"")])
        reader = cdblib.Reader((d / "x.cdb").read_bytes())
        self.assertEqual(list(reader.gets(b"k")), [b"1", b"2"])
        self.assertEqual(reader.get(b"other"), b"")


class AtomicWriteTests(SynchronousTestCase):
    def test_write_new_never_overwrites(self):
        """write_new creates a file once, with its mode, and leaves an existing file alone."""
        d = tempdir(self)
        self.assertTrue(write_new(d / "f", b"one", 0o600))
        self.assertFalse(write_new(d / "f", b"two"))
        self.assertEqual((d / "f").read_bytes(), b"one")
        self.assertEqual((d / "f").stat().st_mode & 0o777, 0o600)
        self.assertEqual(os.listdir(d), ["f"])

    def test_write_atomic_replaces(self):
        """write_atomic replaces the file with a new inode and leaves no temp file."""
        d = tempdir(self)
        (d / "f").write_bytes(b"old")
        inode = (d / "f").stat().st_ino
        write_atomic(d / "f", b"new")
        self.assertEqual((d / "f").read_bytes(), b"new")
        self.assertNotEqual((d / "f").stat().st_ino, inode)
        self.assertEqual(os.listdir(d), ["f"])


class ControlFilesTests(SynchronousTestCase):
    def test_text_values(self):
        """lines() drops comments and blank lines; value() is the first line; int() parses it."""
        d = tempdir(self)
        (d / "concurrencyremote").write_bytes(b"# max\n\n 20  \n")
        control = ControlFiles(d)
        self.assertEqual(control.lines("concurrencyremote"), [" 20"])
        self.assertEqual(control.value("concurrencyremote"), "20")
        self.assertEqual(control.int("concurrencyremote", 5), 20)
        self.assertEqual(control.int("absent", 5), 5)
        self.assertEqual(control.value("absent", "dflt"), "dflt")

    def test_bad_number_names_file(self):
        """A control file that should hold a number but doesn't is a ControlFileError with its path."""
        d = tempdir(self)
        (d / "databytes").write_bytes(b"lots\n")
        with self.assertRaises(ControlFileError) as caught:
            ControlFiles(d).int("databytes", 0)
        self.assertIn(f"{d / 'databytes'}:1", str(caught.exception))

    def test_text_edit_is_seen(self):
        """An edited control file is re-read on the next lookup (in place or replaced)."""
        d = tempdir(self)
        (d / "rcpthosts").write_bytes(b"a.com\n")
        control = ControlFiles(d)
        self.assertTrue(control.contains("rcpthosts", "A.com"))
        self.assertFalse(control.contains("rcpthosts", "b.com"))
        with open(d / "rcpthosts", "ab") as handle:  # edit in place
            handle.write(b"b.com\n")
        self.assertTrue(control.contains("rcpthosts", "b.com"))
        write_atomic(d / "rcpthosts", b"c.com\n")  # replace
        self.assertEqual(control.lines("rcpthosts"), ["c.com"])
        self.assertFalse(control.contains("rcpthosts", "a.com"))
        (d / "rcpthosts").unlink()
        self.assertEqual(control.lines("rcpthosts"), [])

    def test_keys_are_a_lowered_set_made_once_per_change(self):
        """keys(): the lines stripped and lower-cased as one set, the same
        object until the file changes; None when it is absent."""
        d = tempdir(self)
        (d / "locals").write_bytes(b"# ours\n Example.COM \nlocalhost\n")
        control = ControlFiles(d)
        self.assertEqual(control.keys("locals"), {"example.com", "localhost"})
        self.assertIs(control.keys("locals"), control.keys("locals"))
        write_atomic(d / "locals", b"other.org\n")
        self.assertEqual(control.keys("locals"), {"other.org"})
        self.assertIsNone(control.keys("absent"))

    def test_cached_until_changed(self):
        """Unchanged files are not re-parsed: the same cdb reader is returned."""
        d = tempdir(self)
        write_cdb(d / "morercpthosts.cdb", [(b"x.org", b"")])
        control = ControlFiles(d)
        self.assertIs(control.cdb("morercpthosts"), control.cdb("morercpthosts"))

    def test_cdb_first_and_replacement_seen(self):
        """A cdb is consulted before the text file; replacing the cdb is seen at once;
        removing it falls back to the text."""
        d = tempdir(self)
        (d / "rcpthosts").write_bytes(b"text.org\n")
        control = ControlFiles(d)
        self.assertTrue(control.contains("rcpthosts", "text.org"))
        write_cdb(d / "rcpthosts.cdb", [(b"one.org", b"")])
        self.assertTrue(control.contains("rcpthosts", "ONE.org"))
        self.assertFalse(control.contains("rcpthosts", "text.org"))
        write_cdb(d / "rcpthosts.cdb", [(b"two.org", b"")])
        self.assertTrue(control.contains("rcpthosts", "two.org"))
        self.assertFalse(control.contains("rcpthosts", "one.org"))
        (d / "rcpthosts.cdb").unlink()
        self.assertTrue(control.contains("rcpthosts", "text.org"))

    def test_sql_slot_between_cdb_and_text(self):
        """With NAME.sql present and a sql lookup installed, it answers before the text file
        (but after a cdb)."""
        d = tempdir(self)
        (d / "rcpthosts").write_bytes(b"text.org\n")
        (d / "rcpthosts.sql").write_bytes(b"table\n")
        asked = []
        control = ControlFiles(d, sql_lookup=lambda table, key: asked.append((table, key)) or key == "sql.org")
        self.assertTrue(control.contains("rcpthosts", "SQL.org"))
        self.assertFalse(control.contains("rcpthosts", "text.org"))
        self.assertEqual(asked, [("rcpthosts", "sql.org"), ("rcpthosts", "text.org")])
        write_cdb(d / "rcpthosts.cdb", [(b"cdb.org", b"")])
        self.assertTrue(control.contains("rcpthosts", "cdb.org"))
        self.assertEqual(len(asked), 2)

    def test_corrupt_cdb_is_reported(self):
        """A file that is not a cdb is a ControlFileError naming it."""
        d = tempdir(self)
        (d / "rcpthosts.cdb").write_bytes(b"xx")
        with self.assertRaises(ControlFileError) as caught:
            ControlFiles(d).contains("rcpthosts", "a")
        self.assertIn("rcpthosts.cdb", str(caught.exception))


class RecheckTests(SynchronousTestCase):
    """ControlFiles(recheck=N): stat at most once in N seconds, refresh() forces it."""

    def test_edit_is_seen_after_recheck_or_refresh(self):
        """With recheck, an edit shows after the interval or a refresh(), not at once."""
        from unittest import mock
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, "me"), "w") as f:
            f.write("one.example\n")
        now = [1000.0]
        with mock.patch("indimail.config.control.time.monotonic", lambda: now[0]):
            control = ControlFiles(path, recheck=1.0)
            self.assertEqual(control.value("me"), "one.example")
            with open(os.path.join(path, "me"), "w") as f:
                f.write("two.example.longer\n")
            self.assertEqual(control.value("me"), "one.example")   # within the second
            now[0] += 1.5
            self.assertEqual(control.value("me"), "two.example.longer")
            with open(os.path.join(path, "me"), "w") as f:
                f.write("three.example\n")
            control.refresh()
            self.assertEqual(control.value("me"), "three.example")
            self.assertFalse(control.exists("rcpthosts"))

    def test_refresh_works_soon_after_boot(self):
        """refresh() makes the next lookup look even when the monotonic clock
        (which starts near 0 at boot) is still below the recheck interval."""
        from unittest import mock
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, "me"), "w") as f:
            f.write("one.example\n")
        with mock.patch("indimail.config.control.time.monotonic", lambda: 5.0):
            control = ControlFiles(path, recheck=3600.0)
            self.assertEqual(control.value("me"), "one.example")
            with open(os.path.join(path, "me"), "w") as f:
                f.write("two.example.longer\n")
            control.refresh()
            self.assertEqual(control.value("me"), "two.example.longer")

    def test_broken_file_is_reported_at_every_lookup(self):
        """With recheck, a file that fails to parse is not served stale until
        the next recheck: every lookup reports it until it is mended."""
        from unittest import mock
        path = self.mktemp()
        os.makedirs(path)
        cdb = os.path.join(path, "rcpthosts.cdb")
        write_cdb(cdb, [(b"a.example", b"")])
        now = [1000.0]
        with mock.patch("indimail.config.control.time.monotonic", lambda: now[0]):
            control = ControlFiles(path, recheck=1.0)
            self.assertTrue(control.contains("rcpthosts", "a.example"))
            with open(cdb, "wb") as f:
                f.write(b"not a cdb")
            now[0] += 1.5
            self.assertRaises(ControlFileError, control.contains, "rcpthosts", "a.example")
            self.assertRaises(ControlFileError, control.contains, "rcpthosts", "a.example")
            write_cdb(cdb, [(b"a.example", b"")])
            self.assertTrue(control.contains("rcpthosts", "a.example"))
