"""Finding and ordering plugins: built-ins, entry points, PLUGINn, smtpplugins."""

from __future__ import annotations

import os
import sys

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.plugins.api import PluginSetup, Verdict
from indimail.plugins.chain import PluginChain
from indimail.plugins.context import HookContext
from indimail.plugins.loader import (PluginLoadError, builtin_factories, load_plugins,
                                     numbered_variables)
from indimail.smtp.session import Session, Transaction
from indimail.config.environment import Environment
from tests.unit.plugins import helpers


def _setup(testcase, env=None):
    path = testcase.mktemp()
    os.makedirs(path)
    return PluginSetup(control=ControlFiles(path), env=env or {})


def _ctx(env=None):
    session = Session(env=Environment(env or {}), remote_ip="192.0.2.1")
    session.transaction = Transaction("a@example.net")
    from twisted.logger import Logger
    return HookContext(session, session.transaction, None, Clock(), Logger())


class LoaderTests(SynchronousTestCase):

    def setUp(self):
        del helpers.CALLS[:]

    def test_builtins_include_rcpthosts(self):
        """Every indimail.policy module's PLUGINS are found; rcpthosts is one."""
        self.assertIn("rcpthosts", builtin_factories())

    def test_numbered_variables_stop_at_first_gap(self):
        """PLUGIN0, PLUGIN1, ... are read until the first missing number."""
        env = {"PLUGIN0": "a:b", "PLUGIN1": "c:d", "PLUGIN3": "e:f"}
        self.assertEqual(numbered_variables(env), ["a:b", "c:d"])

    def test_plugin_variables_are_loaded_and_ordered(self):
        """PLUGINn paths load next to the built-ins and run by their order."""
        env = {"PLUGIN0": "tests.unit.plugins.helpers:Third",
               "PLUGIN1": "tests.unit.plugins.helpers:First",
               "PLUGIN2": "tests.unit.plugins.helpers:Second"}
        chain = PluginChain(load_plugins(_setup(self, env)), Clock())
        names = chain.names("rcpt")
        self.assertEqual(names[:3], ["first", "second", "third"])
        self.assertEqual(names[-1], "rcpthosts")
        result = self.successResultOf(chain.run("rcpt", _ctx(), "x@example.com"))
        self.assertEqual(result.verdict, Verdict.DENY)
        self.assertEqual(helpers.CALLS, ["first", "second"])   # third never asked

    def test_smtpplugins_lists_exactly_what_runs_in_that_order(self):
        """control/smtpplugins names the plugins and their order."""
        lines = ["tests.unit.plugins.helpers:Third", "tests.unit.plugins.helpers:First",
                 "rcpthosts"]
        chain = PluginChain(load_plugins(_setup(self), lines), Clock())
        self.assertEqual(chain.names("rcpt"), ["third", "first", "rcpthosts"])

    def test_smtpplugins_minus_drops_a_default(self):
        """A ``-name`` line removes one plugin from the default set."""
        chain = PluginChain(load_plugins(_setup(self), ["-rcpthosts"]), Clock())
        self.assertNotIn("rcpthosts", chain.names("rcpt"))
        self.assertIsNone(chain.find("rcpthosts"))

    def test_bad_path_is_a_clear_error(self):
        """A PLUGINn that cannot be imported stops loading with its name."""
        with self.assertRaises(PluginLoadError) as ctx:
            load_plugins(_setup(self, {"PLUGIN0": "no_such_module_xyz:Thing"}))
        self.assertIn("no_such_module_xyz:Thing", str(ctx.exception))

    def test_entry_point_group(self):
        """A distribution declaring an ``indimail.plugins`` entry point is loaded."""
        site = self.mktemp()
        info = os.path.join(site, "demo_plugin-1.0.dist-info")
        os.makedirs(info)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 1.0\n")
        with open(os.path.join(info, "entry_points.txt"), "w") as f:
            f.write("[indimail.plugins]\ndemo = tests.unit.plugins.helpers:First\n")
        sys.path.insert(0, site)
        self.addCleanup(sys.path.remove, site)
        chain = PluginChain(load_plugins(_setup(self)), Clock())
        self.assertEqual(chain.names("rcpt")[0], "first")
