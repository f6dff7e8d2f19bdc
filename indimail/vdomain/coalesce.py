"""Gather concurrent single-key reads into batched reads.

Under load every SMTP session asks the store about one recipient at a time,
and each question alone costs a trip to a pool thread, a query, a commit and
the database server's per-statement work.  One query for twenty keys costs
little more than one query for one key, so while a batch is out the keys asked
for meanwhile wait and go together in the next one.  With nothing in flight a
key goes without waiting for a batch to land: at light load there is no added
latency.

With *defer_to* (``reactor.callLater``) a batch leaves at the end of the
reactor turn instead: every session whose command arrived in the same poll
adds its key first, so under load the batches are larger and the database
sees fewer statements, for no wait beyond the turn itself.
"""

from __future__ import annotations

from typing import Callable, Hashable

from twisted.internet import defer
from twisted.python.failure import Failure

FetchMany = Callable[[list], defer.Deferred]


class Coalescer:
    """``get(key)`` answers through *fetch_many(keys)*, a Deferred firing with
    a dict of the keys found (a missing key answers None).

    At most *parallel* batches are out at once, each of at most *batch*
    keys; the same key asked twice while waiting is fetched once."""

    def __init__(self, fetch_many: FetchMany, *, parallel: int = 2, batch: int = 100,
                 defer_to=None):
        self.fetch_many = fetch_many
        self.parallel = max(1, parallel)
        self.batch = max(1, batch)
        self.defer_to = defer_to
        self._waiting: dict[Hashable, list[defer.Deferred]] = {}
        self._out = 0
        self._flush_due = False

    def get(self, key: Hashable) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._waiting.setdefault(key, []).append(d)
        self._send_soon()
        return d

    def _send_soon(self) -> None:
        """Send now, or at the end of the turn when there is a *defer_to*."""
        if self.defer_to is None:
            self._send()
        elif self._waiting and not self._flush_due and self._out < self.parallel:
            self._flush_due = True
            self.defer_to(0, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        self._send()

    def _send(self) -> None:
        while self._waiting and self._out < self.parallel:
            keys = list(self._waiting)[:self.batch]
            asked = {key: self._waiting.pop(key) for key in keys}
            self._out += 1
            try:
                answer = self.fetch_many(keys)
            except Exception:
                answer = defer.fail()
            answer.addBoth(self._landed, asked)

    def _landed(self, result, asked: dict[Hashable, list[defer.Deferred]]) -> None:
        self._out -= 1
        for key, waiters in asked.items():
            for d in waiters:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result.get(key))
        self._send_soon()
