"""Delivery rate control: rate files, slowq-send's log lines, the engine
holding deliveries back, and several processes sharing one rate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet import task
from twisted.trial import unittest

from indimail.config.home import Home
from indimail.queue.bounce import BounceConfig
from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir
from indimail.queue.todo import Rewriter
from indimail.send.config import SendConfig
from indimail.send.engine import QueueEngine
from indimail.send.ratelimit import (FileRateLimiter, RateError, RateState, assess,
                                     check_file, evaluate, find_definition, fmt_double,
                                     make_limiter, ratecontrol_rate)
from indimail.send.service import make_send_service

from .helpers import FakeAgent, FakeEnqueuer, LogCollector, inject, run_sync, tempdir

CONF = 5 / 3600
DOMAIN = "argos.indimail.org"


class ExpressionTests(unittest.SynchronousTestCase):

    def test_evaluate(self):
        """Rate expressions are arithmetic: a/b, sums of appended +/- parts."""
        self.assertAlmostEqual(evaluate("50/3600"), 50 / 3600)
        self.assertAlmostEqual(evaluate("1790/3600+10/3600"), 0.5)
        self.assertEqual(evaluate("-1"), -1.0)
        self.assertEqual(evaluate("(2+3)*2"), 10.0)

    def test_evaluate_rejects_code(self):
        """Anything but numbers and + - * / is refused (no eval of code)."""
        for bad in ("__import__('os')", "1/0", "abc", "", "2**10"):
            self.assertRaises(RateError, evaluate, bad)

    def test_fmt_double_truncates(self):
        """fmt_double keeps 10 decimals and truncates, like libqmail's."""
        self.assertEqual(fmt_double(50 / 3600), "0.0138888888")
        self.assertEqual(fmt_double(5 / 3600), "0.0013888888")
        self.assertEqual(fmt_double(0.0), "0.0000000000")

    def test_state_bytes(self):
        """Four NUL-terminated fields (reference §8)."""
        state = RateState("50/3600", 7, 100, 200)
        self.assertEqual(state.to_bytes(), b"50/3600\x007\x00100\x00200\x00")
        self.assertEqual(RateState.parse(state.to_bytes()), state)
        self.assertIsNone(RateState.parse(b""))


class SeedLogTests(unittest.SynchronousTestCase):
    """The slowq-send lines of the seed's "Controlling Delivery Rates" run,
    recomputed from its timestamps (start 20:42:46, rate 5/3600)."""

    def line(self, count, elapsed, msgid):
        check, _ = assess(DOMAIN, CONF, count, 1000, 1000 + elapsed)
        return check.log_line("slowq", msgid)

    def test_first_delivery_ok(self):
        """First message, 6 s after the start: ok."""
        self.assertEqual(self.line(0, 6, 932523),
                         "info: slowq argos.indimail.org msg 932523: rate "
                         "[1/0.0000000000/0.0013888888] ok since 6 secs")

    def test_exceeded(self):
        """One delivery 11 s ago is above 5/3600: wait 709 s."""
        self.assertEqual(self.line(1, 11, 932523),
                         "warning: slowq argos.indimail.org msg 932523: rate exceeded "
                         "[2/0.0909090936/0.0013888888] need 709 secs; will try again later")
        self.assertEqual(self.line(1, 25, 933364),
                         "warning: slowq argos.indimail.org msg 933364: rate exceeded "
                         "[2/0.0399999991/0.0013888888] need 695 secs; will try again later")

    def test_ok_again_then_exceeded(self):
        """721 s later the held message goes, the next one waits 719 s."""
        self.assertEqual(self.line(1, 721, 932523),
                         "info: slowq argos.indimail.org msg 932523: rate "
                         "[2/0.0013869625/0.0013888888] ok since 1 secs")
        self.assertEqual(self.line(2, 721, 933364),
                         "warning: slowq argos.indimail.org msg 933364: rate exceeded "
                         "[3/0.0027739251/0.0013888888] need 719 secs; will try again later")

    def test_negative_and_zero_rates(self):
        """A negative rate only counts; zero holds everything back."""
        ok, counts = assess(DOMAIN, -1.0, 100, 1000, 1001)
        self.assertTrue(ok.ok and counts)
        held, counts = assess(DOMAIN, 0.0, 0, 1000, 1001)
        self.assertFalse(held.ok or counts)


class FileTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.dir = Path(tempdir(self))

    def test_check_counts_and_holds(self):
        """A delivery within the rate is counted in the file; one above it is
        refused and leaves the file alone."""
        path = self.dir / DOMAIN
        now = int(time.time())
        path.write_bytes(RateState("5/3600", 0, now - 6, now - 6).to_bytes())
        first = check_file(path, DOMAIN, now)
        self.assertTrue(first.ok)
        self.assertEqual(RateState.parse(path.read_bytes()),
                         RateState("5/3600", 1, now - 6, now))
        second = check_file(path, DOMAIN, now + 5)
        self.assertFalse(second.ok)
        self.assertEqual(second.need, 709)
        self.assertEqual(RateState.parse(path.read_bytes()).count, 1)

    def test_interval_resets(self):
        """A file not updated for RATELIMIT_INTERVAL starts counting afresh."""
        path = self.dir / DOMAIN
        now = int(time.time())
        path.write_bytes(RateState("5/3600", 500, now - 10, now - 10).to_bytes())
        os.utime(path, (now - 100, now - 100))
        check = check_file(path, DOMAIN, now, interval=50)
        self.assertTrue(check.ok)
        self.assertEqual(RateState.parse(path.read_bytes()), RateState("5/3600", 1, now, now))

    def test_lookup_order(self):
        """<domain>, then ratecontrol (wildmat, channel prefixes), then .global."""
        self.assertIsNone(find_definition(self.dir, DOMAIN, "remote"))
        (self.dir / ".global").write_bytes(RateState("1", 0, 1, 1).to_bytes())
        self.assertEqual(find_definition(self.dir, DOMAIN, "remote").path.name, ".global")
        (self.dir / "ratecontrol").write_text("*.indimail.org:local:9/60\n"
                                              "*.indimail.org:remote:10/60\n")
        found = find_definition(self.dir, DOMAIN, "remote")
        self.assertEqual((found.path.name, found.expression), (DOMAIN, "10/60"))
        self.assertEqual(find_definition(self.dir, DOMAIN, "local").expression, "9/60")
        (self.dir / DOMAIN).write_bytes(RateState("5/3600", 0, 1, 1).to_bytes())
        self.assertEqual(find_definition(self.dir, DOMAIN, "remote"),
                         type(found)(self.dir / DOMAIN))

    def test_ratecontrol_creates_state(self):
        """A ratecontrol rate is counted in a <domain> file made on first use."""
        (self.dir / "ratecontrol").write_text("example.com:2/60\n")
        found = find_definition(self.dir, "example.com", "remote")
        check = check_file(found.path, "example.com", 1000, expression=found.expression)
        self.assertTrue(check.ok)
        self.assertEqual(RateState.parse((self.dir / "example.com").read_bytes()),
                         RateState("2/60", 1, 1000, 1000))

    def test_ratecontrol_regex(self):
        """QREGEX turns ratecontrol patterns into regular expressions."""
        self.assertEqual(ratecontrol_rate(["^ex.*com$:3/60"], "example.com", "remote",
                                          regex=True), "3/60")
        self.assertIsNone(ratecontrol_rate(["^ex.*com$:3/60"], "example.com", "remote"))

    def test_make_limiter(self):
        """<queue>/ratelimit by default, RATELIMIT_DIR elsewhere, empty = off."""
        limiter = make_limiter(Path("/q/slowq"), {}, blocking=run_sync)
        self.assertEqual(limiter.directory, Path("/q/slowq/ratelimit"))
        self.assertEqual(make_limiter(Path("/q"), {"RATELIMIT_DIR": "/r"},
                                      blocking=run_sync).directory, Path("/r"))
        self.assertIsNone(make_limiter(Path("/q"), {"RATELIMIT_DIR": ""}, blocking=run_sync))

    def test_processes_share_one_rate(self):
        """Four processes counting 25 deliveries each on one file under the
        lock end with a count of exactly 100 (no update lost)."""
        path = self.dir / DOMAIN
        path.write_bytes(RateState("-1", 0, 1, 1).to_bytes())
        code = ("import sys, time\n"
                "from indimail.send.ratelimit import check_file\n"
                "for _ in range(25):\n"
                "    assert check_file(sys.argv[1], 'd', int(time.time())).ok\n")
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(4)]
        self.assertEqual([p.wait(timeout=120) for p in procs], [0, 0, 0, 0])
        self.assertEqual(RateState.parse(path.read_bytes()).count, 100)


def slow_config(**kw) -> SendConfig:
    kw.setdefault("rewriter", Rewriter(frozenset({DOMAIN})))
    kw.setdefault("bounce", BounceConfig())
    kw.setdefault("concurrency", {"local": 5, "remote": 5})
    return SendConfig(**kw)


class EngineRateTests(unittest.SynchronousTestCase):
    """The engine holds a delivery back until the rate allows it."""

    def setUp(self):
        base = tempdir(self)
        self.queue = QueueDir(Path(base) / "slowq", 3)
        queue_fix(self.queue)
        self.clock = task.Clock()
        self.clock.advance(int(time.time()))
        self.logs = LogCollector()
        self.local = FakeAgent()
        self.ratedir = self.queue.path / "ratelimit"
        self.ratedir.mkdir()
        start = int(self.clock.seconds()) - 6
        (self.ratedir / DOMAIN).write_bytes(RateState("5/3600", 0, start, start).to_bytes())

    def engine(self, **kw) -> QueueEngine:
        cfg = slow_config(**kw)
        engine = QueueEngine(self.queue, config=lambda: cfg, local=self.local,
                             remote=FakeAgent(), enqueuer=FakeEnqueuer(), reactor=self.clock,
                             blocking=run_sync, label="slowq", watch_trigger=False)
        engine.log = self.logs.logger()
        self.addCleanup(lambda: engine.running and engine.stopService())
        return engine

    def test_second_message_waits(self):
        """Two messages to a 5/3600 domain: the first goes, the second is held
        ("rate exceeded ... need N secs", "delayed jobs=1") and goes N+1 s
        later."""
        first = inject(self.queue, "mbhangui@" + DOMAIN, ["mbhangui@" + DOMAIN])
        second = inject(self.queue, "mbhangui@" + DOMAIN, ["mbhangui@" + DOMAIN])
        engine = self.engine()
        engine.startService()
        self.clock.advance(0)
        self.assertEqual([c[0] for c in self.local.calls], [first])
        self.assertIn(f"info: slowq {DOMAIN} msg {first}: rate "
                      "[1/0.0000000000/0.0013888888] ok since 6 secs", self.logs.lines)
        warning = [ln for ln in self.logs.lines if "rate exceeded" in ln]
        self.assertEqual(len(warning), 1)
        self.assertTrue(warning[0].startswith(f"warning: slowq {DOMAIN} msg {second}: "
                                              "rate exceeded [2/"))
        self.assertIn("status: local 0/5 remote 0/5 delayed jobs=1 slowq", self.logs.lines)
        need = int(warning[0].split("need ")[1].split()[0])
        self.assertEqual(engine.scheduled()[(second, "local")], self.clock.seconds() + need + 1)
        self.clock.advance(need)
        self.assertEqual(len(self.local.calls), 1)
        self.clock.advance(1)
        self.assertEqual([c[0] for c in self.local.calls], [first, second])
        self.assertFalse(os.path.exists(self.queue.info(second)))

    def test_ratelimit_dir_empty_disables(self):
        """RATELIMIT_DIR set empty: no rate control, both go at once."""
        inject(self.queue, "a@" + DOMAIN, ["mbhangui@" + DOMAIN])
        inject(self.queue, "a@" + DOMAIN, ["mbhangui@" + DOMAIN])
        engine = self.engine(env={"RATELIMIT_DIR": ""})
        engine.startService()
        self.clock.advance(0)
        self.assertEqual(len(self.local.calls), 2)
        self.assertFalse([ln for ln in self.logs.lines if "rate" in ln])

    def test_other_domains_unlimited(self):
        """A domain without a definition is delivered without rate lines."""
        inject(self.queue, "a@x", ["u@" + DOMAIN.replace("argos", "other")])
        engine = self.engine(rewriter=Rewriter(frozenset({"other.indimail.org"})))
        engine.startService()
        self.clock.advance(0)
        self.assertEqual(len(self.local.calls), 1)
        self.assertFalse([ln for ln in self.logs.lines if "rate" in ln])

    def test_bad_definition_delivers(self):
        """A broken rate file is reported and the delivery goes ahead."""
        (self.ratedir / DOMAIN).write_bytes(b"5/\x000\x001\x001\x00")
        inject(self.queue, "a@x", ["mbhangui@" + DOMAIN])
        engine = self.engine()
        engine.startService()
        self.clock.advance(0)
        self.assertEqual(len(self.local.calls), 1)
        self.assertTrue([ln for ln in self.logs.lines
                         if ln.startswith("warning: slowq: failed to get delivery rate for")])


class SlowqServiceTests(unittest.SynchronousTestCase):

    def test_slowq_gets_an_engine(self):
        """A home with queue/slowq runs an engine for it, labelled slowq, that
        delivers what domainqueue routed there."""
        home = Home(Path(tempdir(self)))
        os.makedirs(home.control)
        (home.control / "me").write_text(DOMAIN + "\n")
        slowq = QueueDir(home.queue_base / "slowq")
        queue_fix(slowq)
        local = FakeAgent()
        clock = task.Clock()
        svc = make_send_service(home, reactor=clock, env={}, local=local,
                                remote=FakeAgent(), enqueuer=FakeEnqueuer(), blocking=run_sync)
        self.assertEqual([(e.name, e.label) for e in svc.engines],
                         [("queue1", "queue1"), ("slowq", "slowq")])
        msgid = inject(slowq, "a@" + DOMAIN, ["b@" + DOMAIN])
        svc.startService()
        self.addCleanup(svc.stopService)
        clock.advance(0)
        self.assertEqual([c[0] for c in local.calls], [msgid])

    def test_limiter_class(self):
        """Without RATELIMIT_REDIS the limiter keeps state in the files."""
        self.assertIsInstance(make_limiter(Path("/q"), {}, blocking=run_sync), FileRateLimiter)
