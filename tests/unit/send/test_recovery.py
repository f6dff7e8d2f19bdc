"""Crash points inside finishing a message, and ids reused while one is finished."""

from __future__ import annotations

from twisted.internet import defer

from indimail.delivery.result import DeliveryResult
from indimail.queue.envelope import Envelope
from indimail.send.engine import QueueEngine

from .helpers import FakeAgent, inject
from .test_engine import EngineTestCase, config


class FinishCrashTests(EngineTestCase):

    def test_crash_after_mess_removed_is_finished_at_start(self):
        """A crash after qmail-clean's part (intd, mess gone) but before the info
        file went leaves info as the record: the next start removes it."""
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.queue.info(msgid).write_bytes(Envelope("s@far.test", []).info_bytes())
        for path in (self.queue.todo(msgid), self.queue.intd(msgid), self.queue.mess(msgid)):
            path.unlink()
        self.start(self.engine())
        self.assertGone(msgid)

    def test_finishing_removes_info_last(self):
        """messdone removes intd and mess before info (qmail-send's order)."""
        from indimail.send import disk
        removed = []
        original = disk.unlink
        self.patch(disk, "unlink", lambda path: removed.append(str(path)) or original(path))
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.start(self.engine())
        self.assertGone(msgid)
        order = [str(self.queue.intd(msgid)), str(self.queue.mess(msgid)),
                 str(self.queue.info(msgid))]
        self.assertEqual([p for p in removed if p in order][-3:], order)


class ReusedIdTests(EngineTestCase):

    def test_todo_waits_for_finish_of_same_id(self):
        """A new message that got the inode of a message still being finished is
        preprocessed only after the old one's files are gone."""
        engine = self.engine()
        self.start(engine)
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine._finishing.add(msgid)
        engine.kick()
        self.clock.advance(0)
        self.assertTrue(self.queue.todo(msgid).exists())
        self.assertFalse(self.queue.info(msgid).exists())
        engine._finished(None, msgid)
        self.clock.advance(0)
        self.clock.advance(1)
        self.assertGone(msgid)
        self.assertEqual([c[2] for c in self.local.calls], ["a@example.net"])


class SteppedRunner:
    """An engine disk runner the test drives: each call waits until the test
    runs its function (the "thread" work) and then lands its result on the
    reactor, so thread work and reactor callbacks can be interleaved at will."""

    def __init__(self):
        self.calls: list[list] = []

    def __call__(self, f, *args, **kwargs):
        d = defer.Deferred()
        self.calls.append([f, args, kwargs, d, None])
        return d

    def find(self, what):
        """The first waiting call of *what* (a function, or the job function
        of a batch)."""
        for call in self.calls:
            if call[0] is what or (call[1] and call[1][0] is what):
                return call
        raise AssertionError(f"no call of {what} waiting: {self.calls}")

    def work(self, call) -> None:
        call[4] = call[0](*call[1], **call[2])

    def land(self, call) -> None:
        self.calls.remove(call)
        call[3].callback(call[4])

    def step(self, what) -> None:
        call = self.find(what)
        self.work(call)
        self.land(call)


class StaleScanTests(EngineTestCase):

    def test_stale_todo_scan_does_not_steal_a_reused_id(self):
        """A todo scan taken before message 1's todo processing finished
        still lists its id; once message 1 is delivered and removed a new
        message may get the same id (inode).  The stale entry must neither
        preprocess the new message before message 1's ``end msg`` nor lose
        its delivery (its pass dropped while message 1's pass still ran)."""
        from indimail.queue.todo import list_ids
        from indimail.send.disk import close_channel
        from indimail.send.engine import _todo_job
        runner = SteppedRunner()
        local = FakeAgent(hold=True)
        engine = QueueEngine(self.queue, config=lambda: config(), local=local,
                             remote=FakeAgent(), enqueuer=self.enqueuer, reactor=self.clock,
                             blocking=runner, watch_trigger=False)
        engine.log = self.logs.logger()
        self.addCleanup(self.stop, engine)
        engine.startService()
        while runner.calls:                   # start-up: cleanup, pqadd and todo scans
            call = runner.calls[0]
            runner.work(call)
            runner.land(call)
        self.clock.advance(0)
        msgid = inject(self.queue, "s@far.test", ["a@example.net"], body=b"Subject: one\n\n1\n")
        engine.kick()
        runner.step(list_ids)                 # scan 1 sees message 1
        engine.kick()                         # trigger again while todo work is queued
        scan2 = runner.find(list_ids)
        runner.work(scan2)                    # scan 2 also sees message 1's todo file
        runner.step(_todo_job)                # message 1 preprocessed
        self.clock.advance(0)
        self.assertEqual(len(local.pending), 1)
        runner.land(scan2)                    # the stale scan lands
        local.pending.pop().callback(DeliveryResult.success("did 1+0+0"))
        close = runner.find(close_channel)
        runner.work(close)                    # message 1's files are gone ...
        self.assertFalse(self.queue.mess(msgid).exists())
        inject(self.queue, "s@far.test", ["a@example.net"], body=b"Subject: two\n\n2\n",
               msgid=msgid)                   # ... and message 2 gets its id
        for call in list(runner.calls):
            if call[1] and call[1][0] is _todo_job:
                runner.step(_todo_job)
        self.clock.advance(0)
        runner.land(close)                    # message 1's end msg
        engine.kick()                         # message 2's trigger
        while runner.calls:
            call = runner.calls[0]
            runner.work(call)
            runner.land(call)
            self.clock.advance(0)
        self.assertEqual(len(local.pending), 1, "message 2 was never delivered")
        local.pending.pop().callback(DeliveryResult.success("did 1+0+0"))
        while runner.calls:
            runner.step(runner.calls[0][0] if not runner.calls[0][1] else runner.calls[0][1][0])
        events = [line for line in self.logs.lines if line.startswith(("new msg", "end msg"))]
        self.assertEqual(events, [f"new msg {msgid}", f"end msg {msgid}",
                                  f"new msg {msgid}", f"end msg {msgid}"])
        self.assertGone(msgid)
