from twisted.trial.unittest import SynchronousTestCase

from indimail.config.wildmat import wildmat


class WildmatTests(SynchronousTestCase):
    def test_literal_is_anchored_and_case_sensitive(self):
        """A pattern without metacharacters matches only the whole, same-case text."""
        self.assertTrue(wildmat("user@example.com", "user@example.com"))
        self.assertFalse(wildmat("user@example.com", "user@example.com.au"))
        self.assertFalse(wildmat("user@example.com", "xuser@example.com"))
        self.assertFalse(wildmat("User@example.com", "user@example.com"))

    def test_star(self):
        """* matches any run of characters, including none; consecutive stars act as one."""
        self.assertTrue(wildmat("*@example.com", "joe@example.com"))
        self.assertTrue(wildmat("*@example.com", "@example.com"))
        self.assertTrue(wildmat("a**b", "ab"))
        self.assertTrue(wildmat("*", ""))
        self.assertTrue(wildmat("a*b*c", "axxbyyc"))
        self.assertFalse(wildmat("a*b*c", "axxbyy"))

    def test_question_mark(self):
        """? matches exactly one character."""
        self.assertTrue(wildmat("j?e", "joe"))
        self.assertFalse(wildmat("j?e", "je"))
        self.assertFalse(wildmat("j?e", "jooe"))

    def test_classes(self):
        """[...] matches one character of the class, with a-z ranges."""
        self.assertTrue(wildmat("[abc]x", "bx"))
        self.assertFalse(wildmat("[abc]x", "dx"))
        self.assertTrue(wildmat("user[0-9]", "user7"))
        self.assertFalse(wildmat("user[0-9]", "userx"))

    def test_negated_class(self):
        """[^...] matches one character not in the class."""
        self.assertTrue(wildmat("[^abc]x", "dx"))
        self.assertFalse(wildmat("[^abc]x", "ax"))
        self.assertFalse(wildmat("[^0-9]", "5"))

    def test_bracket_and_dash_first_are_literal(self):
        """A ] or - right after [ (or [^) is a member of the class, not its end or a range."""
        self.assertTrue(wildmat("[]]", "]"))
        self.assertTrue(wildmat("[-a]", "-"))
        self.assertTrue(wildmat("[^]]", "a"))
        self.assertFalse(wildmat("[^]]", "]"))
        self.assertTrue(wildmat("[a-]", "-"))

    def test_backslash_escapes(self):
        """A backslash makes the next character literal."""
        self.assertTrue(wildmat(r"a\*b", "a*b"))
        self.assertFalse(wildmat(r"a\*b", "axb"))
        self.assertTrue(wildmat(r"\?", "?"))
        self.assertFalse(wildmat(r"\?", "x"))
        self.assertTrue(wildmat(r"\[x]", "[x]"))

    def test_empty(self):
        """The empty pattern matches only the empty text."""
        self.assertTrue(wildmat("", ""))
        self.assertFalse(wildmat("", "a"))

    def test_pathological_pattern_is_fast(self):
        """Many stars against a long non-matching text end quickly (ABORT pruning)."""
        self.assertFalse(wildmat("*a*a*a*a*a*a*a*a*b", "a" * 200))
