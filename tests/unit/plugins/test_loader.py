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


class AsyncHookTests(SynchronousTestCase):
    """``async def`` hooks and hooks returning Deferreds."""

    def test_async_def_hook_that_answers_at_once(self):
        """An async hook that never waits decides without a timer."""
        class Plugin:
            name, order = "a", 1

            async def hook_rcpt(self, ctx, rcpt):
                from indimail.plugins.api import deny
                return deny("no", 550)
        clock = Clock()
        chain = PluginChain([Plugin()], clock)
        result = self.successResultOf(chain.run("rcpt", _ctx(), "x@example.com"))
        self.assertEqual((result.verdict, clock.getDelayedCalls()), (Verdict.DENY, []))

    def test_async_hook_that_answers_at_once_costs_no_deferred(self):
        """An async hook that never waits is run to its end directly: no
        Deferred or coroutine machinery per hook call."""
        from indimail.plugins import chain as chain_module

        class Plugin:
            name, order = "a", 1

            async def hook_rcpt(self, ctx, rcpt):
                return None

        def no_deferreds(*args, **kwargs):
            raise AssertionError("ensureDeferred used")
        self.patch(chain_module.defer, "ensureDeferred", no_deferreds)
        self.patch(chain_module.defer.Deferred, "fromCoroutine", no_deferreds)
        chain = PluginChain([Plugin(), helpers.Second(None)], Clock())
        result = self.successResultOf(chain.run("rcpt", _ctx(), "x@example.com"))
        self.assertEqual(result.text, "second says no")

    def test_async_hook_that_waits_then_decides(self):
        """An async hook awaiting a Deferred resumes when it fires, twice in
        a row, and its answer is the chain's."""
        from twisted.internet import defer
        from indimail.plugins.api import deny
        first, second = defer.Deferred(), defer.Deferred()

        class Plugin:
            name, order = "a", 1

            async def hook_rcpt(self, ctx, rcpt):
                a = await first
                b = await second
                return deny(f"{a}+{b}", 550)
        d = PluginChain([Plugin()], Clock()).run("rcpt", _ctx(), "x@example.com")
        self.assertNoResult(d)
        first.callback("one")
        self.assertNoResult(d)
        second.callback("two")
        self.assertEqual(self.successResultOf(d).text, "one+two")

    def test_hook_answering_later_leaves_no_timer_and_the_rest_run(self):
        """A hook that answers later runs under one timer, gone once it has
        answered; the plugins after it then run, in order, and decide."""
        from twisted.internet import defer
        from indimail.plugins.api import deny
        pending, seen = defer.Deferred(), []

        class Later:
            name, order = "later", 1

            def hook_rcpt(self, ctx, rcpt):
                seen.append(self.name)
                return pending

        class Next:
            order = 2

            def __init__(self, name, verdict):
                self.name, self.verdict = name, verdict

            def hook_rcpt(self, ctx, rcpt):
                seen.append(self.name)
                return self.verdict
        clock = Clock()
        chain = PluginChain([Later(), Next("b", None), Next("c", deny("no", 550))], clock)
        d = chain.run("rcpt", _ctx(), "x@example.com")
        self.assertEqual((seen, len(clock.getDelayedCalls())), (["later"], 1))
        pending.callback(None)
        self.assertEqual(self.successResultOf(d).text, "no")
        self.assertEqual((seen, clock.getDelayedCalls()), (["later", "b", "c"], []))

    def test_timeout_and_outside_cancel_answer_their_own_texts(self):
        """A hook past its timeout is answered with the timeout text; one
        cancelled from outside (its session went away) with the failure text."""
        from twisted.internet import defer
        from indimail.plugins.chain import DEFAULT_TIMEOUT, FAILURE_TEXT, TIMEOUT_TEXT
        waits = []

        class Plugin:
            name, order = "a", 1

            def hook_rcpt(self, ctx, rcpt):
                waits.append(defer.Deferred())
                return waits[-1]
        clock = Clock()
        chain = PluginChain([Plugin()], clock)
        timed = chain.run("rcpt", _ctx(), "x@example.com")
        clock.advance(DEFAULT_TIMEOUT)
        self.assertEqual(self.successResultOf(timed).text, TIMEOUT_TEXT)
        dropped = chain.run("rcpt", _ctx(), "x@example.com")
        dropped.cancel()
        self.assertEqual(self.successResultOf(dropped).text, FAILURE_TEXT)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(self.flushLoggedErrors(defer.CancelledError)), 1)

    def test_async_hook_failing_after_a_wait_is_451(self):
        """An exception raised in an async hook after it waited (here the
        awaited Deferred's own failure) is logged and answered DENYSOFT."""
        from twisted.internet import defer
        pending = defer.Deferred()

        class Plugin:
            name, order = "a", 1

            async def hook_rcpt(self, ctx, rcpt):
                await pending
        d = PluginChain([Plugin()], Clock()).run("rcpt", _ctx(), "x@example.com")
        pending.errback(ValueError("boom"))
        result = self.successResultOf(d)
        self.assertEqual((result.verdict, result.code), (Verdict.DENYSOFT, 451))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_async_hook_timeout_cancels_what_it_waits_on(self):
        """A waiting async hook past its timeout gets 451, and the Deferred it
        awaited is cancelled (a database query gives up, say)."""
        from twisted.internet import defer
        cancelled = []
        pending = defer.Deferred(cancelled.append)

        class Plugin:
            name, order, timeout = "a", 1, 5

            async def hook_rcpt(self, ctx, rcpt):
                await pending
        clock = Clock()
        d = PluginChain([Plugin()], clock).run("rcpt", _ctx(), "x@example.com")
        clock.advance(5)
        result = self.successResultOf(d)
        self.assertEqual((result.verdict, result.code), (Verdict.DENYSOFT, 451))
        self.assertEqual(cancelled, [pending])

    def test_async_hook_awaiting_a_non_deferred_gets_it_back(self):
        """What an awaited object yields that is not a Deferred is sent
        straight back, as inlineCallbacks does (``asyncio.sleep(0)`` works)."""
        from indimail.plugins.api import deny

        class Foreign:
            def __await__(self):
                got = yield "echo"
                return got

        class Plugin:
            name, order = "a", 1

            async def hook_rcpt(self, ctx, rcpt):
                return deny(await Foreign(), 550)
        result = self.successResultOf(PluginChain([Plugin()], Clock()).run(
            "rcpt", _ctx(), "x@example.com"))
        self.assertEqual((result.verdict, result.text), (Verdict.DENY, "echo"))

    def test_timed_out_async_hook_still_cleans_up(self):
        """A hook whose timeout cancelled what it awaited may await more while
        it cleans up: it is driven to its end, its late answer dropped, and
        nothing is left unhandled."""
        from twisted.internet import defer
        pending, cleanup = defer.Deferred(), defer.Deferred()
        finished = []

        class Plugin:
            name, order, timeout = "a", 1, 5

            async def hook_rcpt(self, ctx, rcpt):
                try:
                    await pending
                finally:
                    await cleanup
                    finished.append(True)
        clock = Clock()
        d = PluginChain([Plugin()], clock).run("rcpt", _ctx(), "x@example.com")
        clock.advance(5)
        self.assertEqual(self.successResultOf(d).code, 451)
        self.assertEqual(finished, [])
        cleanup.callback(None)
        self.assertEqual(finished, [True])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_hook_that_cancels_itself_then_answers(self):
        """An answer that comes after the hook's Deferred was cancelled is
        dropped without an AlreadyCalledError."""
        from twisted.internet import defer
        from indimail.plugins.chain import _start
        pending = defer.Deferred()
        holder = []

        async def hook():
            await pending
            holder[0].cancel()
            return "late"
        holder.append(_start(hook()))
        pending.callback(None)
        self.failureResultOf(holder[0], defer.CancelledError)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_waiting_hook_then_next_plugin(self):
        """A hook answering later with CONTINUE hands over to the next plugin."""
        from twisted.internet import defer
        pending = defer.Deferred()

        class Slow:
            name, order = "slow", 1

            def hook_rcpt(self, ctx, rcpt):
                return pending
        chain = PluginChain([Slow(), helpers.Second(None)], Clock())
        d = chain.run("rcpt", _ctx(), "x@example.com")
        self.assertNoResult(d)
        pending.callback(None)
        self.assertEqual(self.successResultOf(d).text, "second says no")

    def test_failed_deferred_is_451(self):
        """A hook whose Deferred fails is logged and answered DENYSOFT."""
        from twisted.internet import defer

        class Broken:
            name, order = "broken", 1

            def hook_rcpt(self, ctx, rcpt):
                return defer.fail(ValueError("boom"))
        result = self.successResultOf(PluginChain([Broken()], Clock()).run(
            "rcpt", _ctx(), "x@example.com"))
        self.assertEqual((result.verdict, result.code), (Verdict.DENYSOFT, 451))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class DeadlineTests(SynchronousTestCase):
    """Suspended hooks' timeouts share one timer."""

    def setUp(self):
        from indimail.plugins.chain import Deadlines
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock)

    def waits(self, n):
        """*n* Deferreds whose cancellation is expected."""
        from twisted.internet import defer
        out = [defer.Deferred() for _ in range(n)]
        for d in out:
            d.addErrback(lambda f: f.trap(defer.CancelledError))
        return out

    def test_waiting_hooks_share_one_timer_and_each_keeps_its_deadline(self):
        first, second = self.waits(2)
        self.deadlines.add(first, 30)
        self.clock.advance(10)
        self.deadlines.add(second, 30)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertTrue(self.deadlines.settle(first))
        self.assertFalse(self.deadlines.settle(first))
        self.clock.advance(19.9)
        self.assertFalse(second.called)
        self.clock.advance(10.1)                      # 30 s after it was added
        self.assertTrue(second.called)
        self.assertFalse(self.deadlines.settle(second))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_shorter_timeout_moves_the_timer_earlier(self):
        slow, quick = self.waits(2)
        self.deadlines.add(slow, 30)
        self.deadlines.add(quick, 2)
        self.clock.advance(2)
        self.assertEqual((quick.called, slow.called), (True, False))
        self.clock.advance(28)
        self.assertTrue(slow.called)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_the_timer_goes_with_the_last_wait(self):
        waits = self.waits(3)
        for d in waits:
            self.deadlines.add(d, 30)
        for d in waits:
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
            self.assertTrue(self.deadlines.settle(d))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HandedOverDeferredTests(SynchronousTestCase):
    """A hook's Deferred is waited on as it is, or read at once when fired."""

    def _chain(self, answer):
        class Plugin:
            name, order = "a", 1

            def hook_rcpt(self, ctx, rcpt):
                return answer
        return PluginChain([Plugin()], Clock())

    def test_an_unfired_deferred_is_waited_on_itself(self):
        from twisted.internet import defer
        from indimail.plugins.api import deny
        pending = defer.Deferred()
        waited = self._chain(pending).run_now("rcpt", _ctx(), "x@example.com")
        self.assertIs(waited, pending)
        pending.callback(deny("no", 550))
        self.assertEqual(self.successResultOf(waited).code, 550)

    def test_a_fired_deferred_answers_at_once(self):
        from twisted.internet import defer
        from indimail.plugins.api import deny
        answer = self._chain(defer.succeed(deny("no", 550))).run_now("rcpt", _ctx(), "x@e.com")
        self.assertEqual((answer.code, answer.text), (550, "no"))
