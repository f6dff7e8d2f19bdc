"""holdlocal / holdremote and the per-queue concurrency files: read by
SendConfig.load from the control directory, obeyed by the engine, changed
by a SIGHUP reload."""

from __future__ import annotations

import time
from pathlib import Path

from twisted.internet import task
from twisted.trial import unittest

from indimail.config.control import ControlFiles
from indimail.queue.bounce import BounceConfig
from indimail.queue.schedule import LOCAL, REMOTE
from indimail.send.config import SendConfig
from indimail.send.engine import QueueEngine

from .helpers import (FakeAgent, FakeEnqueuer, LogCollector, inject, make_queue, run_sync,
                      tempdir)


class ConfigTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.control_dir = Path(tempdir(self))
        (self.control_dir / "locals").write_text("example.net\n")

    def write(self, name: str, text: str) -> None:
        (self.control_dir / name).write_text(text)

    def load(self, queue_name: str = "queue1") -> SendConfig:
        return SendConfig.load(ControlFiles(self.control_dir), {}, queue_name)

    def test_hold_defaults_off(self):
        """Without holdlocal/holdremote nothing is held."""
        self.assertEqual(dict(self.load().hold), {LOCAL: False, REMOTE: False})

    def test_hold_nonzero(self):
        """Any non-zero number holds the channel; 0 does not."""
        self.write("holdlocal", "1\n")
        self.write("holdremote", "0\n")
        self.assertEqual(dict(self.load().hold), {LOCAL: True, REMOTE: False})
        self.write("holdremote", "5\n")
        self.assertEqual(dict(self.load().hold), {LOCAL: True, REMOTE: True})

    def test_per_queue_concurrency(self):
        """concurrencyl.<queue> / concurrencyr.<queue> override the global
        files for that queue only."""
        self.write("concurrencylocal", "7\n")
        self.write("concurrencyremote", "30\n")
        self.write("concurrencyl.queue2", "3\n")
        self.write("concurrencyr.queue2", "4\n")
        self.assertEqual(dict(self.load("queue1").concurrency), {LOCAL: 7, REMOTE: 30})
        self.assertEqual(dict(self.load("queue2").concurrency), {LOCAL: 3, REMOTE: 4})


class EngineHoldTests(unittest.SynchronousTestCase):

    def setUp(self):
        base = tempdir(self)
        self.queue = make_queue(base)
        self.control_dir = Path(base) / "control"
        self.control_dir.mkdir()
        (self.control_dir / "locals").write_text("example.net\n")
        (self.control_dir / "me").write_text("mx.example.net\n")
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.logs = LogCollector()
        self.local, self.remote = FakeAgent(), FakeAgent()
        control = ControlFiles(self.control_dir)

        def config():
            cfg = SendConfig.load(control, {}, self.queue.name)
            return SendConfig(rewriter=cfg.rewriter, concurrency=cfg.concurrency,
                              hold=cfg.hold, bounce=BounceConfig(bouncehost="mx.example.net"))

        self.config = config

    def write(self, name: str, text: str) -> None:
        path = self.control_dir / name
        path.write_text(text)

    def start(self) -> QueueEngine:
        engine = QueueEngine(self.queue, config=self.config, local=self.local,
                             remote=self.remote, enqueuer=FakeEnqueuer(), reactor=self.clock,
                             blocking=run_sync, watch_trigger=False)
        engine.log = self.logs.logger()
        self.addCleanup(lambda: engine.running and engine.stopService())
        engine.startService()
        self.clock.advance(0)
        self.clock.advance(1)
        return engine

    def test_holdlocal_holds_only_local(self):
        """With holdlocal the local delivery waits (its local file stays, todo
        was processed) while the remote recipient is delivered."""
        self.write("holdlocal", "1\n")
        msgid = inject(self.queue, "s@far.test", ["a@example.net", "b@far.test"])
        engine = self.start()
        self.assertEqual(self.local.calls, [])
        self.assertEqual([c[2] for c in self.remote.calls], ["b@far.test"])
        self.assertFalse(self.queue.todo(msgid).exists())
        self.assertTrue(self.queue.local(msgid).exists())
        self.assertFalse(self.queue.remote(msgid).exists())
        self.assertEqual(engine.held(), {(msgid, "local")})
        self.clock.advance(7 * 24 * 3600)
        self.assertEqual(self.local.calls, [])

    def test_holdremote_holds_only_remote(self):
        """With holdremote only the remote recipient waits."""
        self.write("holdremote", "1\n")
        msgid = inject(self.queue, "s@far.test", ["a@example.net", "b@far.test"])
        engine = self.start()
        self.assertEqual([c[2] for c in self.local.calls], ["a@example.net"])
        self.assertEqual(self.remote.calls, [])
        self.assertEqual(engine.held(), {(msgid, "remote")})

    def test_reload_releases_hold(self):
        """A SIGHUP reload after holdlocal is set to 0 logs the resumption and
        delivers the waiting message at once; the message is then finished."""
        self.write("holdlocal", "1\n")
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine = self.start()
        self.assertEqual(self.local.calls, [])
        self.write("holdlocal", "0\n")
        engine.reload()
        self.clock.advance(0)
        self.assertIn(f"local deliveries resumed {self.queue.name}", self.logs.lines)
        self.assertEqual([c[2] for c in self.local.calls], ["a@example.net"])
        self.assertEqual(engine.held(), set())
        self.assertFalse(self.queue.info(msgid).exists())

    def test_reload_sets_hold(self):
        """A SIGHUP reload that sets holdremote logs it and holds later passes."""
        engine = self.start()
        self.write("holdremote", "2\n")
        engine.reload()
        self.assertIn(f"remote deliveries temporarily held {self.queue.name}", self.logs.lines)
        msgid = inject(self.queue, "s@far.test", ["b@far.test"])
        engine.kick()
        self.clock.advance(0)
        self.assertEqual(self.remote.calls, [])
        self.assertEqual(engine.held(), {(msgid, "remote")})

    def test_run_now_keeps_hold(self):
        """SIGALRM (retry everything now) does not override a hold."""
        self.write("holdlocal", "1\n")
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine = self.start()
        engine.run_now()
        self.clock.advance(0)
        self.assertEqual(self.local.calls, [])
        self.assertEqual(engine.held(), {(msgid, "local")})

    def test_per_queue_concurrency_in_engine(self):
        """concurrencyl.<queue> limits how many local deliveries run at once,
        and the status line shows that limit."""
        self.write("concurrencylocal", "10\n")
        self.write(f"concurrencyl.{self.queue.name}", "1\n")
        self.local = FakeAgent(hold=True)
        inject(self.queue, "s@far.test", ["a@example.net", "b@example.net"])
        self.start()
        self.assertEqual(len(self.local.calls), 1)
        self.assertIn("status: local 1/1 remote 0/20", self.logs.lines)
