"""The SMTP worker's log observer batches its lines per reactor turn."""

import io
import threading

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from indimail.smtp.worker import BatchedStdout


class CountingOut(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


class ThreadClock(Clock):
    def __init__(self):
        super().__init__()
        self.from_threads = []
        self.triggers = []

    def callFromThread(self, f, *args):
        self.from_threads.append((f, args))

    def addSystemEventTrigger(self, phase, event, f):
        self.triggers.append((phase, event, f))


class BatchedStdoutTests(TestCase):
    def emit(self, observer, text):
        Logger(namespace="smtpd", observer=observer).info(text)

    def test_before_attach_each_line_goes_at_once(self):
        out = CountingOut()
        observer = BatchedStdout(out)
        self.emit(observer, "starting")
        self.assertEqual(out.getvalue(), "[smtpd] starting\n")

    def test_one_write_per_reactor_turn(self):
        out, clock = CountingOut(), ThreadClock()
        observer = BatchedStdout(out)
        observer.reactor = clock
        for n in range(5):
            self.emit(observer, f"line {n}")
        self.assertEqual(out.writes, 0)
        clock.advance(0)
        self.assertEqual(out.writes, 1)
        self.assertEqual(out.getvalue().splitlines(),
                         [f"[smtpd] line {n}" for n in range(5)])
        self.emit(observer, "next turn")
        clock.advance(0)
        self.assertEqual(out.writes, 2)

    def test_lines_from_threads_are_handed_to_the_reactor(self):
        out, clock = CountingOut(), ThreadClock()
        observer = BatchedStdout(out)
        observer.reactor = clock
        t = threading.Thread(target=self.emit, args=(observer, "from a pool thread"))
        t.start()
        t.join()
        self.assertEqual(len(clock.from_threads), 1)
        f, args = clock.from_threads[0]
        f(*args)
        self.assertEqual(out.getvalue(), "[smtpd] from a pool thread\n")

    def test_shutdown_flushes_what_is_left(self):
        out, clock = CountingOut(), ThreadClock()
        observer = BatchedStdout(out)
        observer.attach(clock)
        self.emit(observer, "last words")
        [(phase, event, flush)] = clock.triggers
        self.assertEqual((phase, event), ("after", "shutdown"))
        flush()
        self.assertEqual(out.getvalue(), "[smtpd] last words\n")
