import os

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from indimail.config import envdir as envdir_module
from indimail.config.envdir import EnvdirError, read_envdir, service_environment
from indimail.config.environment import Environment
from indimail.config.home import Home

from .helpers import tempdir


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class FileRuleTests(SynchronousTestCase):
    def test_first_line_is_value(self):
        """A file's first line is the value; later lines are ignored."""
        d = tempdir(self)
        write(d / "DATABYTES", b"1000\nignored\n")
        self.assertEqual(read_envdir(d, {})["DATABYTES"], "1000")

    def test_trailing_blanks_removed_leading_kept(self):
        """Trailing spaces and tabs are removed; leading ones are kept."""
        d = tempdir(self)
        write(d / "GREETING", b"  hello \t \n")
        self.assertEqual(read_envdir(d, {})["GREETING"], "  hello")

    def test_nul_becomes_newline(self):
        """NUL bytes in the value become newlines."""
        d = tempdir(self)
        write(d / "MULTI", b"a\0b\0c\n")
        self.assertEqual(read_envdir(d, {})["MULTI"], "a\nb\nc")

    def test_empty_file_unsets(self):
        """A 0-byte file removes the variable; a file holding just a newline sets it empty."""
        d = tempdir(self)
        write(d / "GONE", b"")
        write(d / "EMPTY", b"\n")
        env = read_envdir(d, {"GONE": "x", "EMPTY": "x", "KEPT": "y"})
        self.assertEqual(dict(env), {"EMPTY": "", "KEPT": "y"})

    def test_base_defaults_to_process_environment(self):
        """Without a base the process environment is the starting point; the result is an Environment."""
        d = tempdir(self)
        write(d / "INDIMAIL_TEST_VAR", b"1\n")
        env = read_envdir(d)
        self.assertIsInstance(env, Environment)
        self.assertEqual(env["INDIMAIL_TEST_VAR"], "1")
        self.assertEqual(env.get("PATH"), os.environ.get("PATH"))
        self.assertNotIn("INDIMAIL_TEST_VAR", os.environ)

    def test_dot_files_skipped(self):
        """Names starting with '.' (other than .envdir/.envfile) are not variables."""
        d = tempdir(self)
        write(d / ".hidden", b"1\n")
        self.assertEqual(dict(read_envdir(d, {})), {})

    def test_missing_directory_is_error(self):
        """A directory that does not exist is an EnvdirError naming it."""
        d = tempdir(self) / "absent"
        with self.assertRaises(EnvdirError) as caught:
            read_envdir(d, {})
        self.assertIn(str(d), str(caught.exception))

    def test_unreadable_entry_is_error(self):
        """A sub-directory where a variable file should be is an error naming it."""
        d = tempdir(self)
        (d / "SUBDIR").mkdir()
        with self.assertRaises(EnvdirError) as caught:
            read_envdir(d, {})
        self.assertIn("SUBDIR", str(caught.exception))


class EnvfileTests(SynchronousTestCase):
    def test_envfile_lines(self):
        """.envfile: NAME=value sets, bare NAME unsets, comments/blank lines/leading blanks ignored."""
        d = tempdir(self)
        write(d / ".envfile", b"# comment\n\n  A=1\nB=x=y  \nC\nD=\nE=last")
        env = read_envdir(d, {"C": "old"})
        self.assertEqual(dict(env), {"A": "1", "B": "x=y", "D": "", "E": "last"})

    def test_directory_files_override_envfile(self):
        """.envfile is read first, so the directory's own files win."""
        d = tempdir(self)
        write(d / ".envfile", b"A=from-envfile\nB=from-envfile\n")
        write(d / "A", b"from-file\n")
        self.assertEqual(dict(read_envdir(d, {})), {"A": "from-file", "B": "from-envfile"})


class DotEnvdirTests(SynchronousTestCase):
    def test_envdir_directory_and_precedence(self):
        """A .envdir directory is processed first, so the including directory overrides it;
        .envfile comes before .envdir."""
        d = tempdir(self)
        write(d / ".envdir" / "SHARED", b"inner\n")
        write(d / ".envdir" / "INNER", b"1\n")
        write(d / ".envfile", b"INNER=from-envfile\nFILEONLY=1\n")
        write(d / "SHARED", b"outer\n")
        self.assertEqual(dict(read_envdir(d, {})),
                         {"SHARED": "outer", "INNER": "1", "FILEONLY": "1"})

    def test_envdir_symlink(self):
        """A .envdir symlink to a directory is followed."""
        root = tempdir(self)
        write(root / "common" / "COMMON", b"yes\n")
        write(root / "svc" / "OWN", b"1\n")
        (root / "svc" / ".envdir").symlink_to(root / "common")
        self.assertEqual(dict(read_envdir(root / "svc", {})), {"COMMON": "yes", "OWN": "1"})

    def test_envdir_file_lists_directories(self):
        """A .envdir file lists directories (absolute or relative to it), processed in order."""
        root = tempdir(self)
        write(root / "one" / "X", b"one\n")
        write(root / "two" / "X", b"two\n")
        write(root / "two" / "Y", b"two\n")
        write(root / "svc" / ".envdir", f"{root / 'one'}\n../two\n".encode())
        self.assertEqual(dict(read_envdir(root / "svc", {})), {"X": "two", "Y": "two"})

    def test_envdir_file_missing_directory_is_error(self):
        """A directory named in .envdir that does not exist is an error."""
        root = tempdir(self)
        write(root / "svc" / ".envdir", b"/nonexistent/indimail/dir\n")
        self.assertRaises(EnvdirError, read_envdir, root / "svc", {})

    def test_cycle_reported_not_looped(self):
        """A .envdir cycle (a -> b -> a) ends: each directory is read once and the loop is logged."""
        root = tempdir(self)
        write(root / "a" / "A", b"1\n")
        write(root / "b" / "B", b"2\n")
        (root / "a" / ".envdir").symlink_to(root / "b")
        (root / "b" / ".envdir").symlink_to(root / "a")
        events = []
        self.patch(envdir_module, "log", Logger(observer=events.append))
        self.assertEqual(dict(read_envdir(root / "a", {})), {"A": "1", "B": "2"})
        self.assertEqual(len(events), 1)
        self.assertIn("recursive loop", events[0]["log_format"])
        self.assertEqual(events[0]["path"], str((root / "a").resolve()))

    def test_self_cycle(self):
        """A .envdir pointing at its own directory is a cycle too."""
        root = tempdir(self)
        write(root / "a" / "A", b"1\n")
        write(root / "a" / ".envdir", b".\n")
        events = []
        self.patch(envdir_module, "log", Logger(observer=events.append))
        self.assertEqual(dict(read_envdir(root / "a", {})), {"A": "1"})
        self.assertEqual(len(events), 1)


class ServiceEnvironmentTests(SynchronousTestCase):
    def test_service_variables(self):
        """service_environment = base + variables/<service>/; a missing directory gives the base."""
        home = Home(tempdir(self))
        write(home.variables_for("smtpd") / "CHECKRECIPIENT", b"1\n")
        self.assertEqual(dict(service_environment(home, "smtpd", {"A": "b"})),
                         {"A": "b", "CHECKRECIPIENT": "1"})
        self.assertEqual(dict(service_environment(home, "send", {"A": "b"})), {"A": "b"})


class EnvironmentSpeedTests(SynchronousTestCase):
    """A session's environment is copied and read a few hundred times per
    message: copies, reads and merges go straight to the dict, never through
    Mapping's one-key-at-a-time __getitem__."""

    def test_copies_and_reads_bypass_getitem(self):
        base = Environment({"A": "1", "B": "2"})

        def per_key(self, key):
            raise AssertionError("read key by key")

        self.patch(Environment, "__getitem__", per_key)
        copy = Environment(base).apply([("C", "3"), ("A", None)])
        self.assertEqual(dict(copy.items()), {"B": "2", "C": "3"})
        self.assertEqual((copy.get("B"), copy.get("A", "x"), "C" in copy, "A" in copy),
                         ("2", "x", True, False))
        self.assertEqual((sorted(copy.keys()), sorted(copy.values())), (["B", "C"], ["2", "3"]))
        merged = dict(base.items())
        merged.update(copy.items())
        self.assertEqual(merged, {"A": "1", "B": "2", "C": "3"})

    def test_copy_is_independent(self):
        """A copy made from an Environment does not share its dict."""
        base = Environment({"A": "1"})
        copy = Environment(base)
        self.assertIsNot(copy._data, base._data)
        self.assertEqual(copy, base)
