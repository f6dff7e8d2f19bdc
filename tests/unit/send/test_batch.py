"""BatchRunner: many small blocking jobs in few trips to a thread."""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.trial import unittest

from indimail.send.batch import BatchRunner, run_each


class HeldRunner:
    """A ``blocking`` runner whose trips wait until the test lands them."""

    def __init__(self):
        self.trips: list[tuple] = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.trips.append((f, args, d))
        return d

    def land(self, index: int = 0) -> None:
        f, args, d = self.trips.pop(index)
        d.callback(f(*args))


class BatchRunnerTests(unittest.SynchronousTestCase):

    def test_jobs_arriving_during_a_trip_share_the_next(self):
        """At light load a job starts at once, alone; jobs submitted while
        that trip is under way go together in the next single trip."""
        runner = HeldRunner()
        batch = BatchRunner(runner, lambda x: x * 2, parallel=1, limit=64)
        first = batch.submit(1)
        self.assertEqual(len(runner.trips), 1)
        later = [batch.submit(n) for n in (2, 3, 4)]
        self.assertEqual(len(runner.trips), 1)
        runner.land()
        self.assertEqual(self.successResultOf(first), 2)
        self.assertEqual(len(runner.trips), 1)
        self.assertEqual(runner.trips[0][1][1], [(2,), (3,), (4,)])
        runner.land()
        self.assertEqual([self.successResultOf(d) for d in later], [4, 6, 8])
        self.assertFalse(batch.busy)

    def test_parallel_trips_and_limit(self):
        """Up to *parallel* trips run at once, each with at most *limit* jobs,
        in submission order."""
        runner = HeldRunner()
        batch = BatchRunner(runner, lambda x: x, parallel=2, limit=3)
        results = []
        for n in range(10):
            batch.submit(n).addCallback(results.append)
        self.assertEqual([trip[1][1] for trip in runner.trips], [[(0,)], [(1,)]])
        runner.land(1)
        self.assertEqual(results, [1])
        self.assertEqual(runner.trips[1][1][1], [(2,), (3,), (4,)])
        runner.land(0)
        self.assertEqual(runner.trips[1][1][1], [(5,), (6,), (7,)])
        while runner.trips:
            runner.land()
        self.assertEqual(sorted(results), list(range(10)))

    def test_one_job_error_leaves_the_others(self):
        """A job that raises errbacks its own Deferred only."""
        def work(x):
            if x == 2:
                raise ValueError("bad job")
            return x
        runner = HeldRunner()
        batch = BatchRunner(runner, work)
        hold = batch.submit(0)
        ds = [batch.submit(n) for n in (1, 2, 3)]
        runner.land()
        runner.land()
        self.assertEqual(self.successResultOf(hold), 0)
        self.assertEqual(self.successResultOf(ds[0]), 1)
        self.failureResultOf(ds[1], ValueError)
        self.assertEqual(self.successResultOf(ds[2]), 3)

    def test_failed_trip_fails_its_jobs(self):
        """When the trip itself fails every job of that batch errbacks, and
        later jobs still run."""
        calls = []

        def blocking(f, *args):
            calls.append(args)
            if len(calls) == 1:
                return defer.fail(Failure(RuntimeError("no thread")))
            return defer.succeed(f(*args))
        batch = BatchRunner(blocking, lambda x: x)
        self.failureResultOf(batch.submit(1), RuntimeError)
        self.assertEqual(self.successResultOf(batch.submit(2)), 2)

    def test_run_each(self):
        """run_each keeps the order and wraps each outcome."""
        out = run_each(lambda a, b: a // b, [(4, 2), (1, 0), (9, 3)])
        self.assertEqual([ok for ok, _ in out], [True, False, True])
        self.assertEqual(out[0][1], 2)
        self.assertTrue(out[1][1].check(ZeroDivisionError))
