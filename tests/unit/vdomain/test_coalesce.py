"""Concurrent single-key reads share batched fetches."""

from twisted.internet import defer, task
from twisted.trial import unittest

from indimail.vdomain.coalesce import Coalescer


class Fetcher:
    """Records each batch and answers it when the test says so."""

    def __init__(self):
        self.batches: list[tuple[list, defer.Deferred]] = []

    def __call__(self, keys):
        d = defer.Deferred()
        self.batches.append((list(keys), d))
        return d

    def answer(self, n, found):
        self.batches[n][1].callback(found)


class CoalescerTests(unittest.TestCase):
    def test_first_key_goes_at_once(self):
        fetch = Fetcher()
        c = Coalescer(fetch, parallel=1)
        d = c.get("a")
        self.assertEqual([b[0] for b in fetch.batches], [["a"]])
        fetch.answer(0, {"a": 1})
        self.assertEqual(self.successResultOf(d), 1)

    def test_keys_asked_while_out_share_the_next_fetch(self):
        fetch = Fetcher()
        c = Coalescer(fetch, parallel=1)
        first = c.get("a")
        later = [c.get(k) for k in ("b", "c", "b")]
        self.assertEqual(len(fetch.batches), 1)
        fetch.answer(0, {"a": "A"})
        self.assertEqual(self.successResultOf(first), "A")
        self.assertEqual(fetch.batches[1][0], ["b", "c"])     # "b" once
        fetch.answer(1, {"b": "B"})
        self.assertEqual([self.successResultOf(d) for d in later], ["B", None, "B"])

    def test_parallel_and_batch_limits(self):
        fetch = Fetcher()
        c = Coalescer(fetch, parallel=2, batch=2)
        for k in "abcdef":
            c.get(k)
        self.assertEqual([b[0] for b in fetch.batches], [["a"], ["b"]])
        fetch.answer(0, {})
        self.assertEqual(fetch.batches[2][0], ["c", "d"])
        fetch.answer(1, {})
        self.assertEqual(fetch.batches[3][0], ["e", "f"])

    def test_failure_reaches_every_waiter_and_the_next_batch_goes(self):
        fetch = Fetcher()
        c = Coalescer(fetch, parallel=1)
        c.get("a").addErrback(lambda f: None)
        waiting = [c.get("b"), c.get("c")]
        fetch.batches[0][1].errback(RuntimeError("db down"))
        self.assertEqual(fetch.batches[1][0], ["b", "c"])
        fetch.batches[1][1].errback(RuntimeError("still down"))
        for d in waiting:
            self.failureResultOf(d, RuntimeError)

    def test_fetch_raising_fails_its_keys(self):
        def broken(keys):
            raise ValueError("bad query")
        d = Coalescer(broken).get("a")
        self.failureResultOf(d, ValueError)


class EndOfTurnTests(unittest.TestCase):
    """With *defer_to*, a batch leaves when the reactor turn ends."""

    def setUp(self):
        self.clock = task.Clock()
        self.fetch = Fetcher()
        self.c = Coalescer(self.fetch, parallel=2, defer_to=self.clock.callLater)

    def test_keys_of_one_turn_share_one_batch(self):
        answers = [self.c.get(k) for k in ("a", "b", "c")]
        self.assertEqual(self.fetch.batches, [])          # nothing before the turn ends
        self.clock.advance(0)
        self.assertEqual([b[0] for b in self.fetch.batches], [["a", "b", "c"]])
        self.fetch.answer(0, {"b": "B"})
        self.assertEqual([self.successResultOf(d) for d in answers], [None, "B", None])

    def test_one_flush_per_turn(self):
        for k in "abcd":
            self.c.get(k)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_keys_asked_while_both_slots_are_out_go_after_a_landing(self):
        self.c.get("a")
        self.clock.advance(0)
        self.c.get("b")
        self.clock.advance(0)
        self.c.get("c")
        self.c.get("d")
        self.assertEqual(self.clock.getDelayedCalls(), [])  # no free slot: no flush
        self.fetch.answer(0, {})
        self.clock.advance(0)
        self.assertEqual([b[0] for b in self.fetch.batches], [["a"], ["b"], ["c", "d"]])
