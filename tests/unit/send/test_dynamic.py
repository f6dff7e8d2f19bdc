"""qscheduler's jobs: dynamic queues growing with the load, a dead queue
engine replaced, and the SIGHUP / SIGALRM signals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from indimail.config.home import Home
from indimail.delivery.result import DeliveryResult
from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir
from indimail.send.dynamic import COUNT_FILE, DynamicQueues, read_queue_count
from indimail.send.service import SendService, make_send_service
from indimail.testing import wait_for

from .helpers import FakeAgent, FakeEnqueuer, LogCollector, inject, run_sync, tempdir


def make_home(case, **variables) -> Home:
    home = Home(Path(tempdir(case)))
    os.makedirs(home.control)
    (home.control / "me").write_text("example.net\n")
    (home.control / "concurrencylocal").write_text("1\n")
    (home.control / "concurrencyremote").write_text("1\n")
    os.makedirs(home.variables_for("send"))
    for name, value in variables.items():
        (home.variables_for("send") / name).write_text(value + "\n")
    queue_fix(QueueDir(home.queue_base / "queue1"))
    return home


class DynamicTests(unittest.SynchronousTestCase):

    def service(self, home, local=None):
        self.clock = task.Clock()
        self.clock.advance(int(time.time()))
        self.local = local or FakeAgent(hold=True)
        svc = make_send_service(home, reactor=self.clock, env={}, local=self.local,
                                remote=FakeAgent(), enqueuer=FakeEnqueuer(), blocking=run_sync)
        self.addCleanup(lambda: svc.running and svc.stopService())
        return svc

    def names(self, svc):
        return [e.queue.name for e in svc.engines]

    def test_grows_with_load(self):
        """A busy queue1 (one delivery of a 1+1 concurrency: 50 % load, above
        QUEUE_LOAD 40) gets queue2 created and started at the next check; the
        count is published; at 25 % average no third queue comes."""
        home = make_home(self, QUEUE_DYNAMIC="1", QUEUE_MAX="3", QUEUE_LOAD="40")
        svc = self.service(home)
        grower = svc.getServiceNamed("qscheduler")
        self.assertIsInstance(grower, DynamicQueues)
        inject(QueueDir(home.queue_base / "queue1"), "s@far.test", ["a@example.net"])
        svc.startService()
        self.clock.advance(0)
        self.assertEqual(len(self.local.calls), 1)
        self.assertEqual(self.names(svc), ["queue1"])
        self.clock.advance(5)
        self.assertEqual(self.names(svc), ["queue1", "queue2"])
        self.assertTrue((home.queue_base / "queue2" / "lock" / "trigger").exists())
        self.assertEqual(read_queue_count(home.queue_base), 2)
        self.assertEqual([e.label for e in svc.engines], ["queue1", "queue2"])
        self.clock.advance(5)
        self.assertEqual(self.names(svc), ["queue1", "queue2"])
        # the new queue's engine delivers what is queued there
        msgid = inject(QueueDir(home.queue_base / "queue2"), "s@far.test", ["b@example.net"])
        svc.engines[1].kick()
        self.clock.advance(0)
        self.assertEqual(self.local.calls[-1][:1], (msgid,))

    def test_stops_at_queue_max(self):
        """However high the load, no more than QUEUE_MAX queues run."""
        home = make_home(self, QUEUE_DYNAMIC="1", QUEUE_MAX="3", QUEUE_LOAD="0")
        svc = self.service(home)
        inject(QueueDir(home.queue_base / "queue1"), "s@far.test", ["a@example.net"])
        svc.startService()
        self.clock.advance(0)
        for _ in range(5):
            self.clock.advance(5)
        self.assertEqual(self.names(svc), ["queue1", "queue2", "queue3"])
        self.assertEqual(read_queue_count(home.queue_base), 3)

    def test_resumes_published_count(self):
        """A restart runs every queue an earlier run had grown to."""
        home = make_home(self, QUEUE_DYNAMIC="1", QUEUE_MAX="4")
        (home.queue_base / COUNT_FILE).write_text("3\n")
        svc = self.service(home, local=FakeAgent())
        svc.startService()
        self.assertEqual(self.names(svc), ["queue1", "queue2", "queue3"])

    def test_static_without_dynamic(self):
        """Without QUEUE_DYNAMIC the queue count stays QUEUE_COUNT."""
        home = make_home(self, QUEUE_MAX="3", QUEUE_LOAD="0")
        svc = self.service(home)
        svc.startService()
        self.clock.advance(60)
        self.assertEqual(self.names(svc), ["queue1"])
        self.assertRaises(KeyError, svc.getServiceNamed, "qscheduler")


class RestartTests(unittest.SynchronousTestCase):

    def test_dead_engine_restarts(self):
        """When an engine's periodic scan dies the engine is stopped and a new
        one for the same queue starts a second later and delivers."""
        home = make_home(self)
        clock = task.Clock()
        clock.advance(int(time.time()))
        local = FakeAgent()
        svc = make_send_service(home, reactor=clock, env={}, local=local, remote=FakeAgent(),
                                enqueuer=FakeEnqueuer(), blocking=run_sync)
        logs = LogCollector()
        svc.log = logs.logger()
        self.addCleanup(lambda: svc.running and svc.stopService())
        [old] = svc.engines

        def boom():
            raise RuntimeError("scan broke")
        old._todo_tick = boom
        old.log = LogCollector().logger()
        svc.startService()
        clock.advance(60)
        self.assertEqual(svc.engines, [])
        self.assertFalse(old.running)
        self.assertIn("alert: qscheduler: queue queue1 died; restarting", logs.lines)
        msgid = inject(QueueDir(home.queue_base / "queue1"), "s@far.test", ["a@example.net"])
        clock.advance(1)
        [new] = svc.engines
        self.assertIsNot(new, old)
        self.assertTrue(new.running)
        self.assertEqual(svc.restarted, ["queue1"])
        clock.advance(0)
        self.assertEqual([c[0] for c in local.calls], [msgid])

    def test_no_restart_after_stop(self):
        """A death noticed while the service stops starts nothing new."""
        home = make_home(self)
        clock = task.Clock()
        svc = make_send_service(home, reactor=clock, env={}, local=FakeAgent(),
                                remote=FakeAgent(), enqueuer=FakeEnqueuer(), blocking=run_sync)
        svc.log = LogCollector().logger()
        svc.startService()
        [engine] = svc.engines
        svc._engine_died(engine, None)
        svc.stopService()
        clock.advance(5)
        self.assertEqual(svc.engines, [])


class RunNowTests(unittest.SynchronousTestCase):

    def test_run_now_retries_deferred(self):
        """SIGALRM's run_now: a deferred recipient is tried again at once,
        not at its retry time."""
        home = make_home(self)
        clock = task.Clock()
        clock.advance(int(time.time()))
        local = FakeAgent({"a@example.net": [DeliveryResult.deferral("busy"),
                                             DeliveryResult.success("ok")]})
        svc = make_send_service(home, reactor=clock, env={}, local=local, remote=FakeAgent(),
                                enqueuer=FakeEnqueuer(), blocking=run_sync)
        self.addCleanup(lambda: svc.running and svc.stopService())
        msgid = inject(QueueDir(home.queue_base / "queue1"), "s@far.test", ["a@example.net"])
        svc.startService()
        clock.advance(0)
        self.assertEqual(len(local.calls), 1)
        [engine] = svc.engines
        self.assertGreater(engine.scheduled()[(msgid, "local")], clock.seconds() + 50)
        svc.run_now()
        clock.advance(0)
        self.assertEqual(len(local.calls), 2)
        self.assertFalse(QueueDir(home.queue_base / "queue1").info(msgid).exists())


class SignalTests(unittest.TestCase):
    """Real signals to this process reach the service through the reactor."""

    timeout = 60

    def test_sighup_and_sigalrm(self):
        """With install_signals, SIGHUP calls reload and SIGALRM run_now on
        every engine; stopping restores the previous handlers."""
        home = make_home(self)
        clock = task.Clock()
        svc = make_send_service(home, reactor=clock, env={}, local=FakeAgent(),
                                remote=FakeAgent(), enqueuer=FakeEnqueuer(), blocking=run_sync)
        svc.reactor = reactor
        svc.install_signals = True
        [engine] = svc.engines
        calls = []
        engine.reload = lambda: calls.append("reload")
        engine.run_now = lambda: calls.append("run_now")
        before = signal.getsignal(signal.SIGALRM)
        svc.startService()

        async def run():
            os.kill(os.getpid(), signal.SIGHUP)
            await wait_for(reactor, lambda: "reload" in calls, what="reload")
            os.kill(os.getpid(), signal.SIGALRM)
            await wait_for(reactor, lambda: "run_now" in calls, what="run_now")
            await svc.stopService()
            self.assertEqual(signal.getsignal(signal.SIGALRM), before)
        return defer.ensureDeferred(run())

    def test_service_type(self):
        """make_send_service returns the SendService MultiService."""
        self.assertIsInstance(make_send_service(make_home(self), reactor=task.Clock(), env={},
                                                local=FakeAgent(), remote=FakeAgent(),
                                                enqueuer=FakeEnqueuer(), blocking=run_sync),
                              SendService)
