"""The startup heap is frozen out of the cyclic collector's sight."""

import gc

from twisted.application import service
from twisted.internet import task
from twisted.trial import unittest

from indimail.gcfreeze import FreezeStartupHeap, add_process_services


class RunningClock(task.Clock):
    """A clock whose reactor is already running."""

    def callWhenRunning(self, fn, *args):
        fn(*args)


class FreezeTests(unittest.TestCase):

    def setUp(self):
        gc.unfreeze()
        self.addCleanup(gc.unfreeze)

    def test_frozen_when_running_and_again_after_settling(self):
        clock = RunningClock()
        freezer = FreezeStartupHeap(clock, settle=30)
        freezer.startService()
        self.assertGreater(gc.get_freeze_count(), 0)
        first = gc.get_freeze_count()
        keep = [[i] for i in range(1000)]   # the first sessions' lazily made objects
        clock.advance(30)
        self.assertGreaterEqual(gc.get_freeze_count(), first + len(keep))
        self.assertFalse(clock.getDelayedCalls())

    def test_stop_before_settling_cancels_the_second_freeze(self):
        clock = RunningClock()
        freezer = FreezeStartupHeap(clock, settle=30)
        freezer.startService()
        freezer.stopService()
        self.assertFalse(clock.getDelayedCalls())

    def test_every_process_gets_log_buffering_and_the_freeze(self):
        top = service.MultiService()
        add_process_services(top, RunningClock())
        self.assertEqual([s.name for s in top], ["log-buffering", "gc-freeze"])
