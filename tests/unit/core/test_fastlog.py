"""indimail.fastlog.Logger: the same events as Twisted's Logger, made
without sorting the level constants on every call."""

from __future__ import annotations

from twisted.logger import Logger as TwistedLogger
from twisted.logger import LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from indimail import fastlog
from indimail.fastlog import Logger


class _Owner:
    log = Logger()


class FastLoggerTests(SynchronousTestCase):

    def capture(self, logger_class, **kw):
        events = []
        publisher = LogPublisher(events.append)
        logger_class(namespace="ns", source="src", observer=publisher).info(
            "hello {who}", who="world", **kw)
        return events

    def test_same_event_as_twisted(self):
        mine, = self.capture(Logger)
        theirs, = self.capture(TwistedLogger)
        self.assertEqual(set(mine), set(theirs))
        for key in ("log_level", "log_namespace", "log_source", "log_format", "who"):
            self.assertEqual(mine[key], theirs[key], key)
        self.assertIsInstance(mine["log_logger"], Logger)
        self.assertLess(abs(mine["log_time"] - theirs["log_time"]), 5)

    def test_trace_is_recorded(self):
        trace = []
        mine, = self.capture(Logger, log_trace=trace)
        self.assertTrue(trace)
        self.assertIs(trace[0][0], mine["log_logger"])

    def test_an_unknown_level_is_reported_not_emitted(self):
        events = []
        Logger(observer=LogPublisher(events.append)).emit("loud", "text")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.critical)
        self.assertIn("invalid log level", events[0]["log_format"])

    def test_the_level_check_does_not_sort_constants(self):
        """The check uses the set made at import, not LogLevel.iterconstants()."""
        calls = []
        real = LogLevel.iterconstants

        def counting():
            calls.append(1)
            return real()
        self.patch(LogLevel, "iterconstants", counting)
        Logger(observer=LogPublisher(lambda e: None)).info("x")
        self.assertEqual(calls, [])
        self.assertEqual(fastlog._LEVELS, frozenset(real()))

    def test_class_attribute_logger_is_per_instance_and_fast(self):
        owner = _Owner()
        self.assertIsInstance(owner.log, Logger)
        self.assertIs(owner.log.source, owner)

    def test_debug_dropped_where_no_observer_keeps_it(self):
        events = []
        log = Logger(observer=LogPublisher(events.append))
        log.debug("kept {n}", n=1)
        fastlog.drop_debug()
        self.addCleanup(fastlog.drop_debug, False)
        log.debug("dropped")
        log.info("info still {n}", n=2)
        self.assertEqual([e["log_format"] for e in events], ["kept {n}", "info still {n}"])
        self.assertEqual(events[0]["log_level"], LogLevel.debug)
