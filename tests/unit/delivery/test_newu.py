"""qmail-newu: users/assign → users/cdb with upstream's records and layout,
replaced atomically, read back by the local-delivery lookup."""

from __future__ import annotations

import io
import os
import shutil
import struct
import sys
import tempfile
from contextlib import redirect_stderr
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.cli.qmail_newu import NewuError, compile_assign, main, newu, users_dir
from indimail.delivery.assign import Assign, AssignEntry

ASSIGN = (b"=joe:virtual:1:2:/v/joe:::\n"
          b"+Ab-:wild:3:4:/v/w:-:p-:ignored:more\n"
          b"+abc-:deeper:5:6:/v/d:-::\n"
          b"+:catch:7:8:/v/c:-::\n"
          b".\n"
          b"=after:dot:1:1:/x:::\n")


def djb_hash(key: bytes) -> int:
    h = 5381
    for c in key:
        h = ((h << 5) + h) & 0xFFFFFFFF ^ c
    return h


def cdbmake(records) -> bytes:
    """An independent rendering of djb's cdb_make: records in order, then
    256 tables of 2×count slots (linear probing from (h >> 8) % len), the
    index of (position, length) pairs first."""
    body = bytearray(b"\0" * 2048)
    entries = []
    for key, data in records:
        entries.append((djb_hash(key), len(body)))
        body += struct.pack("<LL", len(key), len(data)) + key + data
    index = []
    for bucket in range(256):
        mine = [e for e in entries if e[0] & 255 == bucket]
        length = 2 * len(mine)
        slots = [(0, 0)] * length
        for h, pos in mine:
            where = (h >> 8) % length
            while slots[where][1]:
                where = (where + 1) % length
            slots[where] = (h, pos)
        index.append((len(body), length))
        for h, pos in slots:
            body += struct.pack("<LL", h, pos)
    body[:2048] = b"".join(struct.pack("<LL", p, n) for p, n in index)
    return bytes(body)


class CompileTests(SynchronousTestCase):

    def test_records(self):
        """Keys ``!local\\0`` (exact) and ``!prefix`` (wildcard), lower-cased;
        data the first six fields joined by NULs; the ``""`` key lists the
        last characters of the prefixes; nothing after the ``.`` line."""
        self.assertEqual(compile_assign(ASSIGN), [
            (b"!joe\0", b"virtual\x001\x002\x00/v/joe\x00\x00"),
            (b"!ab-", b"wild\x003\x004\x00/v/w\x00-\x00p-"),
            (b"!abc-", b"deeper\x005\x006\x00/v/d\x00-\x00"),
            (b"!", b"catch\x007\x008\x00/v/c\x00-\x00"),
            (b"", b"-"),
        ])

    def test_other_first_character_is_exact(self):
        """As upstream, any line not starting with ``+`` is an exact entry."""
        self.assertEqual(compile_assign(b"xjoe:u:1:2:/h:::\n.\n")[0][0], b"!joe\0")

    def test_format_errors(self):
        """Upstream's format errors: missing final newline before ``.``, no
        ``.`` line, a NUL, no colon, a leading colon, too few fields, a
        blank line."""
        for bad in (b"=a:u:1:2:/h:::", b"=a:u:1:2:/h:::\n", b"=a:u\0:1:2:/h:::\n.\n",
                    b"=a\n.\n", b":a:u:1:2:/h:::\n.\n", b"=a:u:1:2:/h::\n.\n", b"\n.\n"):
            with self.assertRaises(NewuError, msg=bad) as caught:
                compile_assign(bad)
            self.assertEqual(str(caught.exception), "bad format in users/assign")

    def test_empty_assign(self):
        """Only the ``.`` line: just the empty wildchars record."""
        self.assertEqual(compile_assign(b".\n"), [(b"", b"")])


class NewuFileTests(SynchronousTestCase):

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        (self.dir / "assign").write_bytes(ASSIGN)

    def test_byte_for_byte(self):
        """users/cdb is exactly what djb's cdbmake writes for these records."""
        newu(self.dir)
        self.assertEqual((self.dir / "cdb").read_bytes(), cdbmake(compile_assign(ASSIGN)))
        self.assertFalse((self.dir / "cdb.tmp").exists())

    def test_lookup_reads_it(self):
        """The local-delivery lookup answers from users/cdb like qmail-lspawn:
        exact first, then the longest prefix with the rest appended in its
        original case, then the catch-all."""
        newu(self.dir)
        (self.dir / "assign").write_bytes(b".\n")  # the cdb is what is read
        assign = Assign(self.dir)
        self.assertEqual(assign.lookup("JOE"), AssignEntry("virtual", 1, 2, "/v/joe", "", ""))
        self.assertEqual(assign.lookup("ab-Xy"), AssignEntry("wild", 3, 4, "/v/w", "-", "p-Xy"))
        self.assertEqual(assign.lookup("abc-Q").user, "deeper")
        self.assertEqual(assign.lookup("zed"), AssignEntry("catch", 7, 8, "/v/c", "-", "zed"))

    def test_replaces_atomically(self):
        """A second run renames a new file over the old one (new inode)."""
        newu(self.dir)
        first = os.stat(self.dir / "cdb").st_ino
        (self.dir / "assign").write_bytes(b"=a:u:1:2:/h:::\n.\n")
        newu(self.dir)
        self.assertNotEqual(os.stat(self.dir / "cdb").st_ino, first)
        self.assertEqual(Assign(self.dir).lookup("a").user, "u")

    def test_bad_format_leaves_old_cdb(self):
        """A broken assign leaves the previous users/cdb in place."""
        newu(self.dir)
        before = (self.dir / "cdb").read_bytes()
        (self.dir / "assign").write_bytes(b"=a\n.\n")
        self.assertRaises(NewuError, newu, self.dir)
        self.assertEqual((self.dir / "cdb").read_bytes(), before)

    def run_main(self, argv):
        err = io.StringIO()
        with redirect_stderr(err):
            with self.assertRaises(SystemExit) as caught:
                main(argv)
        return caught.exception.code, err.getvalue()

    def test_main(self):
        """``qmail-newu DIR`` builds DIR/cdb and exits 0."""
        self.assertEqual(self.run_main(["qmail-newu", str(self.dir)]), (0, ""))
        self.assertTrue((self.dir / "cdb").exists())

    def test_main_errors(self):
        """Failures print ``qmail-newu: fatal: ...`` and exit 111."""
        (self.dir / "assign").write_bytes(b"=a\n.\n")
        self.assertEqual(self.run_main(["qmail-newu", str(self.dir)]),
                         (111, "qmail-newu: fatal: bad format in users/assign\n"))
        (self.dir / "assign").unlink()
        self.assertEqual(self.run_main(["qmail-newu", str(self.dir)]),
                         (111, "qmail-newu: fatal: unable to open users/assign\n"))
        missing = str(self.dir / "nope")
        self.assertEqual(self.run_main(["qmail-newu", missing]),
                         (111, f"qmail-newu: fatal: unable to chdir to {missing}\n"))

    def test_users_dir(self):
        """The argument wins, then $ASSIGNDIR, then the home's users/."""
        self.assertEqual(users_dir(["x", "/a"], {"ASSIGNDIR": "/b"}), Path("/a"))
        self.assertEqual(users_dir(["x"], {"ASSIGNDIR": "/b"}), Path("/b"))
        self.assertEqual(users_dir(["x"], {"INDIMAIL_HOME": str(self.dir)}),
                         Path(self.dir) / "users")

    def test_module_main_uses_sys_argv(self):
        """main() without arguments reads sys.argv."""
        self.patch(sys, "argv", ["qmail-newu", str(self.dir)])
        self.assertEqual(self.run_main(None), (0, ""))
        self.assertTrue((self.dir / "cdb").exists())
