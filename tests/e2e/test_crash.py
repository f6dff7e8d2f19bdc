"""Crash safety: kill -9 the running service while messages are injected and
delivered; after a restart every message that got 250 is delivered and the
queue holds nothing stale."""

from __future__ import annotations

import signal
import smtplib
import threading
import time

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from indimail.queue.layout import SPLIT_DIRS
from indimail.testing import wait_for
from tests.e2e.support import MailSystem, files_in, tree_files


class CrashTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.errors: list[str] = []
        self.system = MailSystem(reactor)
        self.addCleanup(lambda: defer.ensureDeferred(self.system.teardown()))
        return defer.ensureDeferred(self.system.setup())

    def _sender(self, port: int, numbers, acked: set, lock: threading.Lock,
                stop: threading.Event, attempts: int = 1):
        """Send messages one per connection until the server goes away.

        With *attempts* > 1 a failed message is retried, as any SMTP client
        retries a temporary failure; every failure is kept in ``errors``."""
        for n in numbers:
            body = f"Subject: crash-{n}\r\n\r\nmessage number {n}\r\n"
            for attempt in range(attempts):
                if stop.is_set():
                    return
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                        client.sendmail("bob@remote.test", ["alice@example.com"], body)
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    self.errors.append(f"message {n}, attempt {attempt + 1}: {exc!r}")
                    if attempt + 1 == attempts:
                        return
                    time.sleep(0.5)
            with lock:
                acked.add(n)

    def _delivered(self) -> set[int]:
        found = set()
        for path in files_in(self.system.alice_new):
            for line in path.read_bytes().splitlines():
                if line.startswith(b"Subject: crash-"):
                    found.add(int(line.split(b"-", 1)[1]))
        return found

    def _queue_leftovers(self) -> list[str]:
        queue = self.system.home / "queue"
        left = []
        for qdir in queue.iterdir():
            for kind in (*SPLIT_DIRS, "bounce", "pid"):
                left += [str(p) for p in tree_files(qdir / kind)]
        return left

    @defer.inlineCallbacks
    def test_kill_9_loses_no_acknowledged_message(self):
        """Every message acknowledged with 250 before or after a kill -9 is
        delivered once the service restarts, and the queue ends empty."""
        system = self.system
        acked: set[int] = set()
        lock = threading.Lock()
        yield defer.ensureDeferred(system.start())

        stop = threading.Event()
        numbers = [range(i * 10000, (i + 1) * 10000) for i in range(4)]
        senders = [threads.deferToThread(self._sender, system.smtp_port, nums, acked, lock, stop)
                   for nums in numbers]
        yield defer.ensureDeferred(wait_for(reactor, lambda: len(acked) >= 40, timeout=120,
                                            what="40 acknowledged messages"))
        yield defer.ensureDeferred(system.stop(signal.SIGKILL))
        yield defer.gatherResults(senders)
        before_restart = set(acked)
        # The kill must have caught work in flight, or this test proves nothing.
        undelivered = before_restart - self._delivered()
        leftovers = self._queue_leftovers()
        print(f"killed with {len(before_restart)} acknowledged, {len(undelivered)} of them "
              f"undelivered, {len(leftovers)} queue files")
        self.assertTrue(undelivered or leftovers)
        self.assertGreaterEqual(len(before_restart), 40)

        # Restart and keep injecting a few more, then let delivery finish.
        yield defer.ensureDeferred(system.start())
        stop.clear()
        more = [range(100000 + i * 10, 100000 + (i + 1) * 10) for i in range(2)]
        del self.errors[:]
        yield defer.gatherResults([
            threads.deferToThread(self._sender, system.smtp_port, nums, acked, lock, stop, 5)
            for nums in more])
        self.assertEqual(len(acked), len(before_restart) + 20,
                         f"after the restart: {self.errors}\n"
                         + system.server.output[-3000:])

        yield defer.ensureDeferred(wait_for(
            reactor, lambda: acked <= self._delivered(), timeout=180,
            what="every acknowledged message in the Maildir"))
        try:
            yield defer.ensureDeferred(wait_for(
                reactor, lambda: not self._queue_leftovers(), timeout=60,
                what="an empty queue"))
        except AssertionError:
            pass   # the assertion below names what was left
        self.assertEqual(self._queue_leftovers(), [],
                         system.server.output[-3000:] if system.server else "")
