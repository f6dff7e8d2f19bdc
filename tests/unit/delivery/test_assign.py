"""users/assign and users/cdb lookups (qmail-lspawn's nughde_get)."""

import os
import tempfile
from pathlib import Path

import cdblib
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFileError
from indimail.delivery.assign import Assign, AssignEntry, AssignTable

TEXT = """=alice:alice:1001:1001:/home/alice:::
+example.com-:example.com:500:500:/var/domains/example.com:-::
+example.com-sales-:sales:501:501:/var/sales:-:list-:
+:alias:7790:2108:/var/alias:-::
.
=after:ignored:1:1:/x:::
"""


class AssignTableTests(SynchronousTestCase):

    def setUp(self):
        self.table = AssignTable.parse(TEXT)

    def test_exact_entry(self):
        """An ``=`` line matches its local part exactly, ext as written."""
        self.assertEqual(self.table.lookup("alice"),
                         AssignEntry("alice", 1001, 1001, "/home/alice", "", ""))

    def test_exact_is_case_insensitive(self):
        """Keys compare case-insensitively, as qmail-newu lower-cases them."""
        self.assertEqual(self.table.lookup("ALICE").user, "alice")

    def test_wildcard_appends_rest(self):
        """A ``+prefix`` line appends the rest of the local part to its ext."""
        entry = self.table.lookup("example.com-alice")
        self.assertEqual(entry, AssignEntry("example.com", 500, 500,
                                            "/var/domains/example.com", "-", "alice"))

    def test_wildcard_keeps_case_of_rest(self):
        """The appended rest keeps the original case of the address."""
        self.assertEqual(self.table.lookup("Example.COM-Alice").ext, "Alice")

    def test_longest_prefix_wins(self):
        """The longest matching prefix decides, its ext prefix kept."""
        entry = self.table.lookup("example.com-sales-bob")
        self.assertEqual((entry.user, entry.ext), ("sales", "list-bob"))

    def test_empty_prefix_catches_everything(self):
        """``+:`` matches any local part nothing else matched."""
        entry = self.table.lookup("nobody-here")
        self.assertEqual((entry.user, entry.ext), ("alias", "nobody-here"))

    def test_dot_line_ends_file(self):
        """Lines after the ``.`` terminator are ignored."""
        table = AssignTable.parse("=a:a:1:1:/a:::\n.\n=after:x:1:1:/x:::\n")
        self.assertIsNone(table.lookup("after"))

    def test_no_match(self):
        """Without a matching line the lookup returns None."""
        table = AssignTable.parse("=a:a:1:1:/a:::\n.\n")
        self.assertIsNone(table.lookup("b"))

    def test_bad_format(self):
        """A line with too few fields is a reported control-file error."""
        self.assertRaises(ControlFileError, AssignTable.parse, "=a:a:1\n.\n")


def _newu(text: str) -> bytes:
    """Build users/cdb the way qmail-newu does."""
    import io
    out = io.BytesIO()
    wild = b""
    with cdblib.Writer(out) as writer:
        for line in text.split("\n"):
            if line.startswith(".") or not line:
                break
            key, _, data = line[1:].partition(":")
            key = b"!" + key.lower().encode()
            if line[0] == "+":
                if len(key) >= 2 and key[-1:] not in wild:
                    wild += key[-1:]
            else:
                key += b"\0"
            fields = data.split(":")
            writer.put(key, "\0".join(fields[:6]).encode())
        writer.put(b"", wild)
    return out.getvalue()


class AssignDirectoryTests(SynchronousTestCase):

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: __import__("shutil").rmtree(self.dir))

    def test_text_file(self):
        """Without users/cdb the text users/assign is read."""
        (self.dir / "assign").write_text(TEXT)
        self.assertEqual(Assign(self.dir).lookup("example.com-bob").ext, "bob")

    def test_missing_files(self):
        """No assign file at all means no user."""
        self.assertIsNone(Assign(self.dir).lookup("alice"))

    def test_cdb_preferred(self):
        """users/cdb, when present, is used with lspawn's exact-then-wildcard walk."""
        (self.dir / "assign").write_text("=alice:wrong:1:1:/x:::\n.\n")
        (self.dir / "cdb").write_bytes(_newu(TEXT))
        assign = Assign(self.dir)
        self.assertEqual(assign.lookup("alice").home, "/home/alice")
        entry = assign.lookup("example.com-sales-Bob")
        self.assertEqual((entry.user, entry.ext), ("sales", "list-Bob"))
        self.assertEqual(assign.lookup("zed").user, "alias")

    def test_reload_on_change(self):
        """An edited assign file is re-read (without recheck: at the next lookup)."""
        path = self.dir / "assign"
        path.write_text("=a:first:1:1:/a:::\n.\n")
        assign = Assign(self.dir)
        self.assertEqual(assign.lookup("a").user, "first")
        path.write_text("=a:second-user:1:1:/a:::\n.\n")
        os.utime(path, ns=(1, 1))
        self.assertEqual(assign.lookup("a").user, "second-user")

    def test_recheck_looks_once_per_interval_or_after_refresh(self):
        """Assign(recheck=N): an edit shows after N seconds or a refresh(),
        not at the next lookup (a busy delivery engine stats users/ once)."""
        from unittest import mock
        path = self.dir / "assign"
        path.write_text("=a:first:1:1:/a:::\n.\n")
        now = [500.0]
        with mock.patch("indimail.delivery.assign.time.monotonic", lambda: now[0]):
            assign = Assign(self.dir, recheck=1.0)
            self.assertEqual(assign.lookup("a").user, "first")
            path.write_text("=a:second-user:1:1:/a:::\n.\n")
            self.assertEqual(assign.lookup("a").user, "first")   # within the second
            now[0] += 1.5
            self.assertEqual(assign.lookup("a").user, "second-user")
            path.write_text("=a:third-user-x:1:1:/a:::\n.\n")
            assign.refresh()
            self.assertEqual(assign.lookup("a").user, "third-user-x")

    def test_refresh_during_a_load_is_not_lost(self):
        """A SIGHUP's refresh() that arrives while another thread is loading
        (after its stat) still makes the next lookup look at the files."""
        import threading
        from unittest import mock
        path = self.dir / "assign"
        path.write_text("=a:first:1:1:/a:::\n.\n")
        now = [500.0]
        with mock.patch("indimail.delivery.assign.time.monotonic", lambda: now[0]):
            assign = Assign(self.dir, recheck=3600.0)
            inside, release = threading.Event(), threading.Event()
            real_read = Assign._read

            def read_then_wait(*args):
                table = real_read(*args)
                inside.set()
                release.wait(10)
                return table

            assign._read = read_then_wait
            loader = threading.Thread(target=assign.lookup, args=("a",))
            loader.start()
            inside.wait(10)
            path.write_text("=a:second-user:1:1:/a:::\n.\n")   # after the loader's read
            assign.refresh()
            release.set()
            loader.join(10)
            assign._read = real_read
            self.assertEqual(assign.lookup("a").user, "second-user")


class AssignConcurrencyTests(SynchronousTestCase):

    def test_lookup_during_reload_sees_whole_table(self):
        """A lookup in one thread while another thread is loading the file
        waits for the whole table instead of finding nothing (which bounced
        mail as 'no mailbox' when deliveries started together)."""
        import threading

        users = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: __import__("shutil").rmtree(users))
        (users / "assign").write_text(TEXT)
        assign = Assign(users)
        inside, release = threading.Event(), threading.Event()
        real_read = Assign._read

        def slow_read(*args):
            inside.set()
            release.wait(10)
            return real_read(*args)

        assign._read = slow_read
        results = {}
        first = threading.Thread(target=lambda: results.setdefault("a", assign.lookup("alice")))
        first.start()
        inside.wait(10)
        second = threading.Thread(target=lambda: results.setdefault("b", assign.lookup("alice")))
        second.start()
        release.set()
        first.join(10)
        second.join(10)
        self.assertEqual(results["a"], results["b"])
        self.assertIsNotNone(results["b"])
