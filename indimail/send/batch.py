"""Run many small blocking jobs of one kind in few trips to a worker thread.

Each trip to a thread costs the reactor a handoff (locks, a wake-up, a
callback) and the process a fight for the GIL; per message that adds up
to more than the file work itself.  A :class:`BatchRunner` queues the jobs
handed to it and runs the queue in one trip: at light load a batch holds
one job and starts at once; under load the jobs that arrive while trips
are under way wait for the next one, so the number of trips stays small
however many messages flow.  Up to *parallel* trips run at once, so jobs
that fsync still share the disk's flushes with each other.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure


def run_each(work: Callable[..., Any], jobs: list[tuple]) -> list[tuple[bool, Any]]:
    """Blocking: ``work(*job)`` for every job, in order; (True, result) or
    (False, Failure) each, so one job's error does not touch the others."""
    out: list[tuple[bool, Any]] = []
    for job in jobs:
        try:
            out.append((True, work(*job)))
        except Exception:
            out.append((False, Failure()))
    return out


class BatchRunner:
    """``submit(*args)`` → Deferred of ``work(*args)``, run in batches.

    *blocking* runs a function in a worker thread (the engine's runner);
    at most *parallel* batches are in a thread at once, each of at most
    *limit* jobs, taken in the order they were submitted."""

    def __init__(self, blocking: Callable[..., defer.Deferred], work: Callable[..., Any], *,
                 parallel: int = 1, limit: int = 64):
        self._blocking = blocking
        self._work = work
        self.parallel = max(1, parallel)
        self.limit = max(1, limit)
        self._queue: list[tuple[tuple, defer.Deferred]] = []
        self._trips = 0

    @property
    def busy(self) -> bool:
        """Whether jobs are queued or in a thread."""
        return bool(self._queue) or self._trips > 0

    def submit(self, *args) -> defer.Deferred:
        d = defer.Deferred()
        self._queue.append((args, d))
        self._pump()
        return d

    def _pump(self) -> None:
        while self._queue and self._trips < self.parallel:
            batch, self._queue = self._queue[:self.limit], self._queue[self.limit:]
            self._trips += 1
            trip = self._blocking(run_each, self._work, [args for args, _ in batch])
            trip.addBoth(self._landed, batch)

    def _landed(self, outcome, batch) -> None:
        self._trips -= 1
        if isinstance(outcome, Failure):   # the trip itself failed: every job did
            outcome = [(False, outcome)] * len(batch)
        for (ok, value), (_args, d) in zip(outcome, batch):
            if ok:
                d.callback(value)
            else:
                d.errback(value)
        self._pump()
