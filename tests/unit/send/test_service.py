"""Wiring of ``indimail-send``: one engine per queue, signals, the tap."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import task
from twisted.trial import unittest

from indimail.config.home import Home
from indimail.send import tap
from indimail.send.service import make_send_service

from .helpers import FakeAgent, FakeEnqueuer, run_sync, tempdir


class ServiceTests(unittest.SynchronousTestCase):

    def home(self, **variables) -> Home:
        home = Home(Path(tempdir(self)))
        os.makedirs(home.control)
        (home.control / "me").write_text("mx.example.net\n")
        os.makedirs(home.variables_for("send"))
        for name, value in variables.items():
            (home.variables_for("send") / name).write_text(value + "\n")
        return home

    def make(self, home):
        return make_send_service(home, reactor=task.Clock(), env={}, local=FakeAgent(),
                                 remote=FakeAgent(), enqueuer=FakeEnqueuer(), blocking=run_sync)

    def test_one_child_per_queue(self):
        """QUEUE_COUNT queues give as many named children, labelled."""
        svc = self.make(self.home(QUEUE_COUNT="2", QUEUE_START="1"))
        self.assertEqual(svc.name, "indimail-send")
        self.assertEqual([s.name for s in svc], ["queue1", "queue2"])
        self.assertEqual([e.label for e in svc.engines], ["queue1", "queue2"])
        self.assertFalse(svc.install_signals)

    def test_single_queue_unlabelled(self):
        """One queue: qmail's plain log lines, no label."""
        svc = self.make(self.home())
        self.assertEqual([e.label for e in svc.engines], [None])

    def test_reload_reads_control(self):
        """SIGHUP's reload picks up a changed concurrencyremote."""
        home = self.home()
        svc = self.make(home)
        (home.control / "concurrencyremote").write_text("3\n")
        svc.reload()
        [engine] = svc.engines
        self.assertEqual(engine.config.concurrency["remote"], 3)

    def test_control_files_are_rechecked_and_refreshed_on_sighup(self):
        """The engine's control files are looked at once a CONTROL_RECHECK
        (not per delivery, as qmail-send reads them at start), and SIGHUP's
        reload makes every cache look again: control files and users/assign."""
        home = self.home(CONTROL_RECHECK="3600")
        os.makedirs(home.users)
        (home.control / "maxdeliveredto").write_text("5\n")
        (home.users / "assign").write_text("=a:first:1:1:/a:::\n.\n")
        svc = make_send_service(home, reactor=task.Clock(), env={}, remote=FakeAgent(),
                                enqueuer=FakeEnqueuer(), blocking=run_sync)
        [engine] = svc.engines
        local = engine.agents["local"]   # the real local deliverer, on the service's controls
        control = local.control
        self.assertEqual((control.recheck, local.assign.recheck), (3600.0, 3600.0))
        self.assertEqual(control.value("maxdeliveredto"), "5")
        self.assertEqual(local.assign.lookup("a").user, "first")
        (home.control / "maxdeliveredto").write_text("77\n")
        (home.users / "assign").write_text("=a:second-user:1:1:/a:::\n.\n")
        self.assertEqual(control.value("maxdeliveredto"), "5")
        svc.reload()
        self.assertEqual(control.value("maxdeliveredto"), "77")
        self.assertEqual(local.assign.lookup("a").user, "second-user")

    def test_when_ready(self):
        """when_ready fires once each engine's start-up scan is done."""
        svc = self.make(self.home(QUEUE_COUNT="2"))
        ready = svc.when_ready()
        self.assertNoResult(ready)
        svc.startService()
        self.successResultOf(ready)
        svc.stopService()

    def test_remote_connection_cache(self):
        """The real remote agent shares a connection cache, a child service
        (so stopping says QUIT on idle connections) with the variables'
        times; REMOTE_CACHE_TIME=0 means one connection per message."""
        def built(home):
            return make_send_service(home, reactor=task.Clock(), env={}, local=FakeAgent(),
                                     enqueuer=FakeEnqueuer(), blocking=run_sync)
        svc = built(self.home(REMOTE_REUSE_TIME="30"))
        cache = svc.getServiceNamed("remote-connections")
        [engine] = svc.engines
        self.assertIs(engine.agents["remote"].cache, cache)
        self.assertEqual((cache.idle_time, cache.reuse_time), (2.0, 30.0))
        svc = built(self.home(REMOTE_CACHE_TIME="0"))
        self.assertNotIn("remote-connections", [s.name for s in svc])
        [engine] = svc.engines
        self.assertIsNone(engine.agents["remote"].cache)

    def test_tap_options(self):
        """``--home`` is the only option."""
        options = tap.Options()
        options.parseOptions(["--home", "/tmp/x"])
        self.assertEqual(options["home"], "/tmp/x")


class OwnThreadPoolTests(unittest.TestCase):

    def test_engine_file_work_runs_on_its_own_pool(self):
        """With a threaded reactor and no runner given, the service makes its
        own thread pool (wider than the reactor's ten threads, so todo
        batches and concurrencylocal deliveries fsync side by side): the
        engines and the local agent use it, it starts with the service and
        stops once the engines have drained."""
        from twisted.internet import reactor
        from indimail.queue.enqueue import Enqueuer
        from indimail.send.service import POOL_MAX

        home = Home(Path(tempdir(self)))
        os.makedirs(home.control)
        (home.control / "me").write_text("mx.example.net\n")
        enqueuer = Enqueuer(home, {}, reactor=reactor)
        self.addCleanup(enqueuer.close)
        svc = make_send_service(home, reactor=reactor, env={}, enqueuer=enqueuer)
        pool = svc.threadpool
        self.assertIsNotNone(pool)
        self.assertEqual(pool.max, POOL_MAX)
        self.assertGreater(POOL_MAX, reactor.getThreadPool().max)
        self.assertIs(svc.engines[0].agents["local"].threadpool, pool)
        self.assertFalse(pool.started)
        svc.startService()
        self.assertTrue(pool.started)
        seen = []

        def where():
            import threading
            seen.append(threading.current_thread().name)

        d = svc.engines[0]._blocking(where)
        d.addCallback(lambda _: svc.when_ready())
        d.addCallback(lambda _: svc.stopService())

        def check(_):
            self.assertTrue(seen and seen[0].startswith("PoolThread-indimail-send"), seen)
            self.assertFalse(pool.started)
        d.addCallback(check)
        return d
