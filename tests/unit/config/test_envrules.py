from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFileError, ControlFiles
from indimail.config.environment import Environment
from indimail.config.envrules import (load_envrules, match_envrules, parse_assignments,
                                      parse_envrules)

from .helpers import tempdir


def rules(*lines):
    return parse_envrules(list(lines), "from.envrules")


class AssignmentTests(SynchronousTestCase):
    def test_set_and_unset(self):
        """VAR=val sets, VAR= unsets, a bare VAR unsets."""
        self.assertEqual(parse_assignments("A=1,B=,C"), [("A", "1"), ("B", None), ("C", None)])

    def test_escaped_comma(self):
        """\\, is a comma inside a value, not a separator."""
        self.assertEqual(parse_assignments(r"RELAYCLIENT=,MSG=a\,b,X=2"),
                         [("RELAYCLIENT", None), ("MSG", "a,b"), ("X", "2")])

    def test_value_keeps_equals_and_blank_names_skipped(self):
        """The value runs to the comma (later '=' included); empty pieces and leading blanks are ignored."""
        self.assertEqual(parse_assignments(" A=b=c,, B=2"), [("A", "b=c"), ("B", "2")])


class MatchTests(SynchronousTestCase):
    def test_split_at_first_colon(self):
        """The pattern ends at the first ':'; the rest are assignments (colons allowed in values)."""
        [rule] = rules("*@example.com:SMTPROUTE=relay.example.com:25")
        self.assertEqual(rule.pattern, "*@example.com")
        self.assertEqual(rule.assignments, [("SMTPROUTE", "relay.example.com:25")])

    def test_line_without_colon_ignored(self):
        """A line without ':' is skipped, as upstream does."""
        self.assertEqual(rules("nocolon", "a@b:X=1")[0].pattern, "a@b")
        self.assertEqual(len(rules("nocolon", "a@b:X=1")), 1)

    def test_wildmat_patterns(self):
        """Patterns are wildmat: anchored, case-sensitive."""
        table = rules("*@example.com:DOMAIN=1", "joe@*:JOE=1", "[a-c]*@*:ABC=1")
        self.assertEqual(match_envrules(table, "joe@example.com"), [("DOMAIN", "1"), ("JOE", "1")])
        self.assertEqual(match_envrules(table, "bob@other.org"), [("ABC", "1")])
        self.assertEqual(match_envrules(table, "Joe@EXAMPLE.com"), [])

    def test_all_matching_lines_apply_in_order(self):
        """Every matching line contributes, in file order, so later lines win when applied."""
        table = rules("*:A=1,B=1", "*@x.org:A=2", "*@y.org:A=3", "a@x.org:B=")
        found = match_envrules(table, "a@x.org")
        self.assertEqual(found, [("A", "1"), ("B", "1"), ("A", "2"), ("B", None)])
        self.assertEqual(dict(Environment({"B": "0"}).apply(found)), {"A": "2"})

    def test_regex_under_qregex(self):
        """With regex=True (QREGEX) patterns are case-insensitive regexes searched in the address."""
        table = rules(r"^joe@.*\.com$:A=1", "EXAMPLE:B=1", "x$:C=1")
        self.assertEqual(match_envrules(table, "joe@example.com", regex=True), [("A", "1"), ("B", "1")])
        self.assertEqual(match_envrules(table, "joe@example.com"), [])

    def test_bad_regex_names_file_and_line(self):
        """An invalid regex is a ControlFileError naming the file and line."""
        table = rules("ok:A=1", "([:B=1")
        with self.assertRaises(ControlFileError) as caught:
            match_envrules(table, "x", regex=True)
        self.assertIn("from.envrules:2", str(caught.exception))

    def test_null_sender(self):
        """An empty pattern or <> matches the null sender; other patterns don't."""
        table = rules(":EMPTY=1", "<>:ANGLE=1", "*@*:AT=1")
        self.assertEqual(match_envrules(table, ""), [("EMPTY", "1"), ("ANGLE", "1")])
        self.assertEqual(match_envrules(table, "a@b"), [("AT", "1")])
        regexes = rules("<>:ANGLE=1", ".@.:AT=1")
        self.assertEqual(match_envrules(regexes, "", regex=True), [("ANGLE", "1")])

    def test_star_matches_null_sender(self):
        """A lone * matches every sender, the null sender included (wildmat semantics)."""
        self.assertEqual(match_envrules(rules("*:A=1"), ""), [("A", "1")])


class LoadTests(SynchronousTestCase):
    def test_load_file(self):
        """load_envrules skips comments/blank lines and keeps real line numbers; a missing file has no rules."""
        home = tempdir(self)
        path = home / "from.envrules"
        path.write_bytes(b"# comment\n\n*@spam.com:DATABYTES=1000  \nnull:\n")
        loaded = load_envrules(path)
        self.assertEqual([(r.pattern, r.assignments, r.lineno) for r in loaded],
                         [("*@spam.com", [("DATABYTES", "1000")], 3), ("null", [], 4)])
        self.assertEqual(load_envrules(home / "absent"), [])

    def test_cached_through_control_files(self):
        """ControlFiles.parsed caches the parsed rules and re-reads them after an edit."""
        home = tempdir(self)
        path = home / "rcpt.envrules"
        path.write_bytes(b"*:A=1\n")
        control = ControlFiles(home)
        first = control.parsed("rcpt.envrules", load_envrules)
        self.assertIs(control.parsed("rcpt.envrules", load_envrules), first)
        path.write_bytes(b"*:A=22,B=3\n")
        self.assertEqual(match_envrules(control.parsed("rcpt.envrules", load_envrules), "x"),
                         [("A", "22"), ("B", "3")])
        path.unlink()
        self.assertIsNone(control.parsed("rcpt.envrules", load_envrules))
