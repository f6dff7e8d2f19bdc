"""The lock/trigger FIFO wakes the engine, again after each writer closes,
and no writer ever finds it without a reader."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from indimail.send.trigger import TriggerWatcher

from .helpers import tempdir


def pull(path: str) -> None:
    """What a queue writer does: one byte, non-blocking, then close."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"\0")
    finally:
        os.close(fd)


class TriggerTests(unittest.TestCase):

    def setUp(self):
        base = tempdir(self)
        self.path = os.path.join(base, "trigger")
        os.mkfifo(self.path, 0o622)
        self.waiters: list[defer.Deferred] = []
        self.pulls = 0
        self.watcher = TriggerWatcher(self.path, reactor, self._pulled)
        self.watcher.start()
        self.addCleanup(self.watcher.close)

    def _pulled(self):
        self.pulls += 1
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            d.callback(None)

    def next_pull(self) -> defer.Deferred:
        d = defer.Deferred()
        self.waiters.append(d)
        return d

    @defer.inlineCallbacks
    def test_each_pull_wakes(self):
        """Two writers one after the other each wake the watcher; after the
        first writer's close the FIFO is reopened and still watched."""
        first = self.next_pull()
        pull(self.path)
        yield first
        self.assertTrue(self.watcher.watching)
        second = self.next_pull()
        pull(self.path)
        yield second
        self.assertGreaterEqual(self.pulls, 2)

    def test_missing_fifo(self):
        """Without a FIFO nothing is watched (the periodic scan still runs)."""
        watcher = TriggerWatcher(self.path + ".missing", reactor, lambda: None)
        watcher.start()
        self.assertFalse(watcher.watching)
        self.flushLoggedErrors()

    @defer.inlineCallbacks
    def test_writer_closing_after_drain(self):
        """A writer that closes after its byte was drained does not stop the
        watcher: later pulls still wake it."""
        fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        first = self.next_pull()
        os.write(fd, b"\0")
        yield first
        os.close(fd)
        self.assertTrue(self.watcher.watching)
        later = self.next_pull()
        pull(self.path)
        yield later
        self.assertGreaterEqual(self.pulls, 2)

    @defer.inlineCallbacks
    def test_no_pull_is_refused(self):
        """Hundreds of writers in a row all find a reader (no ENXIO): the
        watcher keeps the FIFO open for writing itself, so it never has to
        close and reopen between two pulls."""
        for _ in range(500):
            pull(self.path)   # raises OSError(ENXIO) if no reader is there
        woke = self.next_pull()
        pull(self.path)
        yield woke
        self.assertGreaterEqual(self.pulls, 1)

    def test_close_releases_the_fifo(self):
        """After close() nothing of ours holds the FIFO: a writer gets ENXIO."""
        self.watcher.close()
        with self.assertRaises(OSError):
            pull(self.path)
