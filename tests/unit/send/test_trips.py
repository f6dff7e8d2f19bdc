"""What one delivered message costs the engine in trips to a worker thread
and in fsyncs: todo files in parallel batches, the first pass without
reading its files back, one trip to close and remove, no fsync for ``D``."""

from __future__ import annotations

import os

from indimail.delivery.result import DeliveryResult
from indimail.queue.todo import list_ids
from indimail.send import disk
from indimail.send.batch import run_each
from indimail.send.engine import QueueEngine, _todo_job

from .helpers import FakeAgent, inject, run_sync
from .test_engine import EngineTestCase, config
from .test_recovery import SteppedRunner


def job_name(f, args) -> str:
    """The function a runner call does: a batch names its job function."""
    if f is run_each:
        return args[0].__name__
    return f.__name__


class TripTests(EngineTestCase):

    def recording_engine(self, **kw):
        calls: list[str] = []

        def blocking(f, *args, **kwargs):
            calls.append(job_name(f, args))
            return run_sync(f, *args, **kwargs)
        self.local = FakeAgent()
        engine = QueueEngine(self.queue, config=lambda: config(), local=self.local,
                             remote=FakeAgent(), enqueuer=self.enqueuer, reactor=self.clock,
                             blocking=blocking, watch_trigger=False, **kw)
        engine.log = self.logs.logger()
        self.addCleanup(self.stop, engine)
        return engine, calls

    def test_a_delivered_message_takes_three_trips(self):
        """A new one-recipient message costs a todo scan, its todo batch and
        one close batch (D mark, channel file, message files): its first
        pass does not read back what todo processing just wrote, and
        finishing needs no trips of its own."""
        engine, calls = self.recording_engine()
        self.start(engine)
        del calls[:]
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine.kick()
        self.clock.advance(0)
        self.assertGone(msgid)
        self.assertEqual(len(self.local.calls), 1)
        self.assertEqual(calls, ["list_ids", "_todo_job", "close_channel"])
        self.assertEqual([line for line in self.logs.lines if line.startswith("end msg")],
                         [f"end msg {msgid}"])

    def test_retry_pass_reads_its_files(self):
        """A pass that is not the first after todo processing (here: after a
        deferral) reads the channel and info files again."""
        engine, calls = self.recording_engine()
        self.local = engine.agents["local"] = FakeAgent(
            {"a@example.net": [DeliveryResult.deferral("later"),
                               DeliveryResult.success("ok")]})
        self.start(engine)
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine.kick()
        self.clock.advance(0)
        self.assertNotIn("read_pass", calls)
        self.clock.advance(3600)
        self.assertIn("read_pass", calls)
        self.assertGone(msgid)

    def test_todo_files_go_in_parallel_batches(self):
        """Todo files are preprocessed in up to *todo_parallel* trips at once,
        each of up to *todo_batch* files, so their fsyncs overlap."""
        runner = SteppedRunner()
        engine = QueueEngine(self.queue, config=lambda: config(), local=FakeAgent(),
                             remote=FakeAgent(), enqueuer=self.enqueuer, reactor=self.clock,
                             blocking=runner, watch_trigger=False, todo_parallel=2,
                             todo_batch=5)
        engine.log = self.logs.logger()
        self.addCleanup(self.stop, engine)
        engine.startService()
        while runner.calls:
            runner.step(runner.calls[0][0])
        ids = [inject(self.queue, "s@far.test", ["a@example.net"]) for _ in range(12)]
        engine.kick()
        runner.step(list_ids)
        todo = [c for c in runner.calls if c[1] and c[1][0] is _todo_job]
        self.assertEqual([len(c[1][1]) for c in todo], [1, 1])
        runner.step(_todo_job)
        todo = [c for c in runner.calls if c[1] and c[1][0] is _todo_job]
        self.assertEqual([len(c[1][1]) for c in todo], [1, 5])
        while runner.calls:
            call = runner.calls[0]
            runner.work(call)
            runner.land(call)
            self.clock.advance(0)
        for msgid in ids:
            self.assertGone(msgid)
        self.assertEqual(len([l for l in self.logs.lines if l.startswith("new msg")]), 12)


class FsyncTests(EngineTestCase):

    def test_done_marks_are_not_fsynced(self):
        """As qmail-send's markdone(): the ``D`` written in place is not
        fsynced (a lost D repeats a delivery, loses nothing), while todo
        processing still fsyncs the info and channel files it writes."""
        synced: list[str] = []
        real = os.fsync

        def fsync(fd):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            return real(fd)
        self.patch(os, "fsync", fsync)
        local = FakeAgent(hold=True)
        msgid = inject(self.queue, "s@far.test", ["a@example.net", "b@example.net"])
        self.start(self.engine(local=local))
        local_file = str(self.queue.local(msgid))
        self.assertEqual(sorted(synced), sorted([str(self.queue.info(msgid)), local_file]))
        local.pending[0].callback(DeliveryResult.success("ok"))
        self.assertEqual(self.queue.local(msgid).read_bytes()[:1], b"D")
        self.assertEqual(synced.count(local_file), 1)
        local.pending[1].callback(DeliveryResult.success("ok"))
        self.assertGone(msgid)
        self.assertEqual(synced.count(local_file), 1)

    def test_mark_done_fsync_on_request(self):
        """mark_done still fsyncs when asked to."""
        synced = []
        real = os.fsync
        self.patch(os, "fsync", lambda fd: synced.append(fd) or real(fd))
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        path = self.queue.local(msgid)
        path.write_bytes(b"Ta@example.net\0")
        disk.mark_done(path, 0)
        self.assertEqual(synced, [])
        disk.mark_done(path, 0, fsync=True)
        self.assertEqual(len(synced), 1)
        self.assertEqual(path.read_bytes(), b"Da@example.net\0")

