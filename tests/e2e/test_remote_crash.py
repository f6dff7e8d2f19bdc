"""Crash safety of remote delivery: kill -9 ``twistd indimail`` while it
relays a stream of messages through smtproutes to Postfix's smtp-sink;
after a restart every message acknowledged with 250 reaches the sink
(at least once: duplicates are allowed, distinct Subject numbers are
counted) and the queue ends empty."""

from __future__ import annotations

import re
import signal
import smtplib
import threading
import time

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from indimail.queue.layout import SPLIT_DIRS
from indimail.testing import wait_for
from tests.e2e.support import MailSystem, files_in, tree_files

SUBJECT = re.compile(rb"^Subject: rcrash-(\d+)\r?$", re.MULTILINE)


class RemoteCrashTests(unittest.TestCase):
    timeout = 300

    def setUp(self):
        self.errors: list[str] = []
        self.system = MailSystem(reactor)
        self.addCleanup(lambda: defer.ensureDeferred(self.system.teardown()))
        return defer.ensureDeferred(self.system.setup())

    def _sender(self, port: int, numbers, acked: set, lock: threading.Lock,
                stop: threading.Event, attempts: int = 1):
        """Relay messages to a remote address, one per connection, until the
        server goes away (with *attempts* > 1 a failure is retried)."""
        for n in numbers:
            body = f"Subject: rcrash-{n}\r\n\r\nrelayed message {n}\r\n"
            for attempt in range(attempts):
                if stop.is_set():
                    return
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                        client.sendmail("bob@example.com", [f"carol{n % 7}@remote.test"], body)
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    self.errors.append(f"message {n}, attempt {attempt + 1}: {exc!r}")
                    if attempt + 1 == attempts:
                        return
                    time.sleep(0.5)
            with lock:
                acked.add(n)

    def _sunk(self) -> set[int]:
        """Distinct Subject numbers in the sink's dump files."""
        found = set()
        for path in files_in(self.system.sink_dir):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found.update(int(m) for m in SUBJECT.findall(data))
        return found

    def _queue_leftovers(self) -> list[str]:
        left = []
        for qdir in (self.system.home / "queue").iterdir():
            for kind in (*SPLIT_DIRS, "bounce", "pid"):
                left += [str(p) for p in tree_files(qdir / kind)]
        return left

    @defer.inlineCallbacks
    def test_kill_9_while_relaying_loses_nothing(self):
        """Every message acknowledged with 250 before or after a kill -9 in
        the middle of relaying reaches the smtp-sink once the service
        restarts, and the queue ends empty."""
        system = self.system
        acked: set[int] = set()
        lock = threading.Lock()
        yield defer.ensureDeferred(system.start())

        stop = threading.Event()
        numbers = [range(i * 10000, (i + 1) * 10000) for i in range(4)]
        senders = [threads.deferToThread(self._sender, system.smtp_port, nums, acked, lock, stop)
                   for nums in numbers]
        # kill once relaying is under way: some messages in the sink already
        yield defer.ensureDeferred(wait_for(
            reactor, lambda: len(acked) >= 60 and len(self._sunk()) >= 10, timeout=120,
            what="60 acknowledged and 10 relayed messages"))
        yield defer.ensureDeferred(system.stop(signal.SIGKILL))
        yield defer.gatherResults(senders)
        before_restart = set(acked)
        undelivered = before_restart - self._sunk()
        leftovers = self._queue_leftovers()
        print(f"killed with {len(before_restart)} acknowledged, {len(undelivered)} of them "
              f"not relayed, {len(leftovers)} queue files")
        # The kill must have caught work in flight, or this test proves nothing.
        self.assertTrue(undelivered or leftovers)

        yield defer.ensureDeferred(system.start())
        stop.clear()
        more = [range(100000 + i * 10, 100000 + (i + 1) * 10) for i in range(2)]
        del self.errors[:]
        yield defer.gatherResults([
            threads.deferToThread(self._sender, system.smtp_port, nums, acked, lock, stop, 5)
            for nums in more])
        self.assertEqual(len(acked), len(before_restart) + 20,
                         f"after the restart: {self.errors}\n" + system.server.output[-3000:])

        # the restarted service retries what the killed one left (SIGALRM
        # would make it retry at once; the first retry is due soon anyway)
        yield defer.ensureDeferred(wait_for(
            reactor, lambda: acked <= self._sunk(), timeout=240,
            what="every acknowledged message in the sink"))
        try:
            yield defer.ensureDeferred(wait_for(
                reactor, lambda: not self._queue_leftovers(), timeout=60,
                what="an empty queue"))
        except AssertionError:
            pass   # the assertion below names what was left
        self.assertEqual(self._queue_leftovers(), [],
                         system.server.output[-3000:] if system.server else "")
