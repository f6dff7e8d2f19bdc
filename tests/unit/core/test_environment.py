from twisted.trial.unittest import SynchronousTestCase

from indimail.config.environment import Environment


class EnvironmentTests(SynchronousTestCase):
    def test_set_returns_copy(self):
        """set() gives a new Environment and leaves the original untouched."""
        base = Environment({"A": "1"})
        changed = base.set(B="2")
        self.assertEqual(dict(base), {"A": "1"})
        self.assertEqual(dict(changed), {"A": "1", "B": "2"})

    def test_apply_in_order_none_unsets(self):
        """apply() applies assignments in order and None unsets a variable."""
        env = Environment({"DATABYTES": "100", "X": "y"})
        out = env.apply([("DATABYTES", None), ("X", "z"), ("X", "w")])
        self.assertNotIn("DATABYTES", out)
        self.assertEqual(out["X"], "w")

    def test_flag_is_set_even_when_empty(self):
        """qmail switches are on when set, even to the empty string."""
        env = Environment({"RELAYCLIENT": ""})
        self.assertTrue(env.flag("RELAYCLIENT"))
        self.assertFalse(env.flag("CHECKRECIPIENT"))

    def test_int_default_on_garbage(self):
        """int() falls back to the default for unset or non-numeric values."""
        env = Environment({"N": " 42 ", "BAD": "x"})
        self.assertEqual(env.int("N", 1), 42)
        self.assertEqual(env.int("BAD", 7), 7)
        self.assertEqual(env.int("MISSING", 9), 9)

    def test_immutable_mapping(self):
        """An Environment has no item assignment."""
        env = Environment({"A": "1"})
        with self.assertRaises(TypeError):
            env["A"] = "2"  # type: ignore[index]

    def test_hashable_and_equal(self):
        """Equal contents compare and hash equal."""
        self.assertEqual(Environment({"A": "1"}), Environment({"A": "1"}))
        self.assertEqual(hash(Environment({"A": "1"})), hash(Environment({"A": "1"})))
