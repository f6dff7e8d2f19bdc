"""The slowq queue end to end: mail queued with QUEUEDIR=<base>/slowq (what
domainqueue sets) is delivered by the slowq engine into the Maildir, and
the rate file holds the second message back."""

from __future__ import annotations

import os
import time

from twisted.internet import defer, reactor
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

from indimail.config.init import init_home
from indimail.queue.enqueue import Enqueuer
from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir
from indimail.send.ratelimit import RateState
from indimail.send.service import make_send_service
from indimail.testing import wait_for
from tests.integration.send.test_engine_real import LineWaiter
from tests.unit.send.helpers import tempdir


class SlowqTests(unittest.TestCase):

    timeout = 90

    def setUp(self):
        self.home = init_home(tempdir(self), domain="example.com", env={},
                              hostname="mx.example.net")
        domain_dir = self.home.domains / "example.com"
        (domain_dir / ".qmail-alice").write_text("./alice/Maildir/\n")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(domain_dir / "alice" / "Maildir" / sub)
        self.maildir_new = domain_dir / "alice" / "Maildir" / "new"
        self.slowq = QueueDir(self.home.queue_base / "slowq")
        queue_fix(self.slowq)
        ratedir = self.slowq.path / "ratelimit"
        ratedir.mkdir()
        start = int(time.time()) - 10
        (ratedir / "example.com").write_bytes(RateState("1/3600", 0, start, start).to_bytes())
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name="test-enqueue")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.enqueuer = Enqueuer(self.home, {}, reactor=reactor, threadpool=self.pool)
        self.logs = LineWaiter()
        self.addCleanup(self.logs.close)
        self.service = make_send_service(self.home, reactor=reactor, env={},
                                         enqueuer=self.enqueuer)
        self.service.startService()
        self.addCleanup(lambda: self.service.stopService() if self.service.running else None)

    @defer.inlineCallbacks
    def test_rate_controlled_delivery(self):
        """The first message to example.com is delivered from slowq with the
        "rate ... ok" line; the second is held with "rate exceeded" and stays
        queued in slowq (not in queue1)."""
        yield self.service.when_ready()
        env = {"QUEUEDIR": str(self.slowq.path)}
        first = yield self.enqueuer.enqueue("s@far.test", ["alice@example.com"],
                                            [b"Subject: one\n\nfirst\n"], env=env)
        yield self.logs.wait(rf"info: slowq example\.com msg {first}: rate \[1/")
        yield self.logs.wait(rf"end msg {first} slowq")
        second = yield self.enqueuer.enqueue("s@far.test", ["alice@example.com"],
                                             [b"Subject: two\n\nsecond\n"], env=env)
        match = yield self.logs.wait(rf"warning: slowq example\.com msg {second}: rate "
                                     r"exceeded \[2/[0-9.]+/0\.0002777777\] need (\d+) secs")
        self.assertGreater(int(match.group(1)), 3000)
        yield self.logs.wait(r"delayed jobs=1 slowq")
        yield wait_for(reactor, lambda: os.listdir(self.maildir_new), what="first delivery")
        self.assertEqual(len(os.listdir(self.maildir_new)), 1)
        self.assertTrue(self.slowq.local(second).exists())
        self.assertEqual(RateState.parse((self.slowq.path / "ratelimit" / "example.com")
                                         .read_bytes()).count, 1)
