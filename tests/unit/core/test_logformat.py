"""The cheap log line formatter writes exactly what Twisted's classic one does."""

import io
import time

from twisted.logger import (LogLevel, formatEvent, formatEventAsClassicLogText, formatTime,
                            textFileLogObserver, timeFormatRFC3339)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from indimail import logformat
from indimail.logbuffer import LogBuffering


def twisted_line(event):
    return formatEventAsClassicLogText(event,
                                       formatTime=lambda t: formatTime(t, timeFormatRFC3339))


def failure():
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()


class NotStr:
    def __str__(self):
        raise RuntimeError("no text")


def events(now):
    base = {"log_time": now, "log_namespace": "indimail.send.engine.QueueEngine",
            "log_level": LogLevel.info}
    return [
        dict(base, log_format="{line}", line="new msg 123"),
        dict(base, log_format="{line}", line="two\nlines"),
        dict(base, log_format="delivery {n}: {status}: {report}", n=7, status="success",
             report="ünïcode 250 ok"),
        dict(base, log_format="{{literal}} braces and {x}", x=None),
        dict(base, log_format="{x!r} {y:>6} {z.real} {f()}", x="q", y=3, z=2, f=lambda: "called"),
        dict(base, log_format="{absent}"),
        dict(base, log_format="{unclosed"),
        dict(base, log_format=b"bytes {x}", x=1),
        dict(base, log_format=""),
        dict(base),
        dict(base, log_format="{line}", line="x", log_system="smtpd worker 1"),
        dict(base, log_format="{line}", line="x", log_system=NotStr()),
        dict(base, log_format="{line}", line="x", log_level=None),
        dict(base, log_format="{line}", line="x", log_time=None),
        dict(base, log_format="{line}", line="x", log_time=now + 0.9999),
        dict(base, log_format="oops {why}", why="bad", log_failure=failure()),
        dict(base, log_format="{line}", line="x", log_flattened={"line!:": "x"}),
        {"log_format": "no namespace, no level, no time"},
    ]


class ClassicFormatTests(SynchronousTestCase):

    def test_same_lines_as_twisted(self):
        """Every kind of event: plain fields, newlines, unicode, braces,
        conversions, specs, attributes, calls, missing keys, bad formats,
        bytes formats, systems, no level, no time, failures, flattened."""
        fast = logformat.ClassicFormat()
        for now in (time.time(), 1_700_000_000.5, 0.25):
            for event in events(now):
                self.assertEqual(fast(event), twisted_line(event), event)

    def test_event_text_same_as_twisted(self):
        text = logformat.EventText()
        for event in events(time.time()):
            self.assertEqual(text(event), formatEvent(event), event)

    def test_timestamp_follows_the_second(self):
        """The stamp made once per second changes with the second."""
        fast = logformat.ClassicFormat()
        for when in (1000.1, 1000.9, 1001.0, 1000.5, 59.999, 60.0, 1_700_000_000.9999997,
                     1_700_000_000.9999994, 1_700_000_001.0000002):
            event = {"log_format": "x", "log_time": when}
            self.assertEqual(fast(event), twisted_line(event))

    def test_install_on_twistd_observer(self):
        """twistd's observer (RFC 3339 times) gets the cheap formatter and
        writes the same text; an observer with another time format keeps
        its own."""
        out = io.StringIO()
        observer = textFileLogObserver(out)
        self.assertTrue(logformat.install(observer))
        self.assertIsInstance(observer.formatEvent, logformat.ClassicFormat)
        self.assertTrue(logformat.install(observer))   # twice is harmless
        event = events(time.time())[2]
        observer(event)
        self.assertEqual(out.getvalue(), twisted_line(event))
        other = textFileLogObserver(io.StringIO(), timeFormat="%H:%M")
        before = other.formatEvent
        self.assertFalse(logformat.install(other))
        self.assertIs(other.formatEvent, before)

    def test_log_buffering_installs_it(self):
        """The per-turn log buffering of every service also makes the lines
        the cheap way."""
        from twisted.internet.task import Clock
        from twisted.logger import globalLogPublisher
        observer = textFileLogObserver(io.StringIO())
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        clock = Clock()
        clock.addSystemEventTrigger = lambda *a: None
        buffering = LogBuffering(clock)
        buffering.startService()
        self.addCleanup(buffering.stopService)
        self.assertIsInstance(observer.formatEvent, logformat.ClassicFormat)
