"""The SMTP workers' reactor: epoll events without a log context each."""

from __future__ import annotations

import socket

from twisted.python import context, log
from twisted.trial.unittest import SynchronousTestCase

from indimail.leanreactor import LeanEPollReactor


class _Reader:
    def __init__(self, sock, seen):
        self.sock, self.seen = sock, seen

    def fileno(self):
        return self.sock.fileno()

    def doRead(self):
        self.seen.append((self.sock.recv(10), context.get(log.ILogContext).get("system")))

    def logPrefix(self):
        return "reader-prefix"

    def connectionLost(self, reason):
        pass


class LeanReactorTests(SynchronousTestCase):

    def setUp(self):
        self.reactor = LeanEPollReactor()
        self.addCleanup(self.reactor._poller.close)
        self.ours, self.theirs = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(self.theirs.close)

    def test_a_ready_descriptor_is_read_outside_a_pushed_log_context(self):
        """doRead runs for the ready descriptor, and the connection's prefix
        is not pushed as the legacy log system around it."""
        seen = []
        reader = _Reader(self.ours, seen)
        self.reactor.addReader(reader)
        self.theirs.send(b"x")
        self.reactor.doPoll(1)
        self.assertEqual(seen, [(b"x", "-")])
        self.reactor.removeReader(reader)

    def test_an_escaping_error_is_logged_under_the_descriptor_prefix(self):
        """What _doReadOrWrite lets through is logged as callWithLogger
        would: an error event whose system is the descriptor's prefix; the
        loop goes on."""
        events = []
        log.addObserver(events.append)
        self.addCleanup(log.removeObserver, events.append)
        reader = _Reader(self.ours, [])
        self.reactor.addReader(reader)

        def broken(selectable, fd, event):
            raise ZeroDivisionError("boom")
        self.reactor._doReadOrWrite = broken
        self.theirs.send(b"x")
        self.reactor.doPoll(1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual([e["system"] for e in events if e.get("isError")], ["reader-prefix"])
        self.reactor.removeReader(reader)
