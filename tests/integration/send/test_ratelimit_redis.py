"""Rate control with its counters in the real Redis (127.0.0.1:6379):
limiters of two "hosts" sharing one rate, and the engine wiring."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import txredisapi
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from indimail.send.ratelimit import (REDIS_PREFIX, RateState, RedisRateLimiter, make_limiter,
                                     parse_redis_address)
from indimail.testing import make_tempdir

DOMAIN = "yahoo.com"


def in_thread(f, *args, **kwargs):
    return threads.deferToThread(f, *args, **kwargs)


class RedisRateTests(unittest.TestCase):

    timeout = 120

    async def _connect(self):
        conn = await txredisapi.Connection("127.0.0.1", 6379, reconnect=False)
        self.addCleanup(conn.disconnect)
        return conn

    def setUp(self):
        self.dir = Path(make_tempdir("indimail-rate-redis-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.prefix = f"indimail-test:{uuid.uuid4().hex}:"

    async def _limiters(self, count: int):
        conns = [await self._connect() for _ in range(count)]

        async def cleanup():
            keys = await conns[0].keys(self.prefix + "*")
            if keys:
                await conns[0].delete(*keys)
        self.addCleanup(lambda: defer.ensureDeferred(cleanup()))
        return conns, [RedisRateLimiter(self.dir, conn, blocking=in_thread, prefix=self.prefix)
                       for conn in conns]

    def test_two_hosts_share_one_rate(self):
        """Two limiters (two delivery hosts) on one Redis: with 2/60 the
        first two deliveries to the domain go, whichever host makes them;
        the third is held with the wait, and the rate file is not touched."""
        async def run():
            now = int(time.time())
            (self.dir / DOMAIN).write_bytes(RateState("2/60", 0, now, now).to_bytes())
            before = (self.dir / DOMAIN).read_bytes()
            conns, (a, b) = await self._limiters(2)
            first = await a.check("u@" + DOMAIN, "remote", now - 30)
            second = await b.check("v@" + DOMAIN, "remote", now)
            third = await a.check("w@" + DOMAIN, "remote", now)
            self.assertEqual((first.ok, second.ok, third.ok), (True, True, False))
            self.assertEqual(third.count, 3)
            self.assertEqual(third.need, 30)   # 2 / (2/60) − 30 s elapsed
            stored = await conns[0].hgetall(self.prefix + DOMAIN)
            self.assertEqual(int(stored["count"]), 2)
            self.assertEqual(int(stored["start"]), now - 30)
            self.assertEqual((self.dir / DOMAIN).read_bytes(), before)
        return defer.ensureDeferred(run())

    def test_concurrent_checks_count_once_each(self):
        """After one delivery 10 s ago, twenty simultaneous checks from four
        connections on a 5/10 rate let exactly five more through (counts 1
        to 5 are at or below the rate): read-decide-write is atomic."""
        async def run():
            now = int(time.time())
            (self.dir / DOMAIN).write_bytes(RateState("5/10", 0, now, now).to_bytes())
            _conns, limiters = await self._limiters(4)
            first = await limiters[0].check("u@" + DOMAIN, "remote", now - 10)
            self.assertTrue(first.ok)
            checks = [defer.ensureDeferred(limiters[i % 4].check(f"u{i}@{DOMAIN}", "remote", now))
                      for i in range(20)]
            results = await defer.gatherResults(checks)
            self.assertEqual(sum(1 for r in results if r.ok), 5)
        return defer.ensureDeferred(run())

    def test_make_limiter_from_env(self):
        """RATELIMIT_REDIS=host:port/db makes the engine use Redis counters."""
        self.assertEqual(parse_redis_address("redis://10.0.0.1:6380/2"), ("10.0.0.1", 6380, 2))
        self.assertEqual(parse_redis_address("127.0.0.1"), ("127.0.0.1", 6379, None))
        made = []

        def factory(host, port, db):
            made.append((host, port, db))
            return txredisapi.lazyConnection(host, port, dbid=db, reconnect=True)
        limiter = make_limiter(self.dir.parent, {"RATELIMIT_DIR": str(self.dir),
                                                 "RATELIMIT_REDIS": "127.0.0.1:6379/0"},
                               blocking=in_thread, redis_factory=factory)
        self.assertIsInstance(limiter, RedisRateLimiter)
        self.assertEqual(made, [("127.0.0.1", 6379, 0)])
        self.assertEqual(limiter.prefix, REDIS_PREFIX)

        async def run():
            now = int(time.time())
            (self.dir / "example.org").write_bytes(RateState("-1", 0, now, now).to_bytes())
            limiter.prefix = self.prefix
            check = await limiter.check("a@example.org", "remote", now)
            self.assertTrue(check.ok)
            conn = await self._connect()
            self.assertEqual(int(await conn.hget(self.prefix + "example.org", "count")), 1)
            await conn.delete(self.prefix + "example.org")
            limiter.close()
        return defer.ensureDeferred(run())


del reactor
