"""The queue engine with a Clock, fake agents and a fake Enqueuer."""

from __future__ import annotations

import os
import time

from twisted.internet import defer, task
from twisted.trial import unittest

from indimail.config.envrules import parse_envrules
from indimail.delivery.result import DeliveryResult
from indimail.queue.errors import QueueError
from indimail.queue.bounce import BounceConfig
from indimail.queue.schedule import TOO_LONG, next_retry
from indimail.queue.todo import Rewriter, parse_virtualdomains
from indimail.send import engine as engine_module
from indimail.send.config import SendConfig
from indimail.send.engine import QueueEngine, sender_for

from .helpers import (FakeAgent, FakeEnqueuer, LogCollector, inject, make_queue, run_sync,
                      tempdir)

NOMAILBOX = "Sorry, no mailbox here by that name. (#5.1.1)"


def config(**kw) -> SendConfig:
    kw.setdefault("rewriter", Rewriter(frozenset({"example.net"}),
                                       parse_virtualdomains(["example.com:example.com"])))
    kw.setdefault("bounce", BounceConfig(bouncehost="mx.example.net",
                                         doublebounceto="postmaster@mx.example.net"))
    return SendConfig(**kw)


class EngineTestCase(unittest.SynchronousTestCase):

    def setUp(self):
        self.queue = make_queue(tempdir(self))
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.enqueuer = FakeEnqueuer()
        self.logs = LogCollector()

    def engine(self, local=None, remote=None, label=None, run_process=None,
               **kw) -> QueueEngine:
        self.local = local or FakeAgent()
        self.remote = remote or FakeAgent()
        cfg = config(**kw)
        engine = QueueEngine(self.queue, config=lambda: cfg, local=self.local,
                             remote=self.remote, enqueuer=self.enqueuer, reactor=self.clock,
                             blocking=run_sync, label=label, watch_trigger=False,
                             run_process=run_process)
        engine.log = self.logs.logger()
        self.addCleanup(self.stop, engine)
        return engine

    def stop(self, engine):
        if engine.running:
            engine.stopService()

    def start(self, engine):
        engine.startService()
        self.clock.advance(0)
        self.clock.advance(1)  # files written by the test are a little newer than the clock

    def assertGone(self, msgid):
        q = self.queue
        for path in (q.mess(msgid), q.intd(msgid), q.todo(msgid), q.info(msgid),
                     q.local(msgid), q.remote(msgid), q.bounce(msgid)):
            self.assertFalse(path.exists(), path)


class DeliveryTests(EngineTestCase):

    def test_success_everywhere(self):
        """A message with local and remote recipients is delivered once each,
        logged in qmail-send's words, and every queue file is removed."""
        msgid = inject(self.queue, "s@far.test", ["a@example.net", "b@far.test"],
                       extra="X-QHPSI: clean\n")
        self.start(self.engine())
        self.assertEqual(self.local.calls, [(msgid, "s@far.test", "a@example.net",
                                             "X-QHPSI: clean\n")])
        self.assertEqual(self.remote.calls, [(msgid, "s@far.test", "b@far.test",
                                              "X-QHPSI: clean\n")])
        self.assertGone(msgid)
        lines = self.logs.lines
        self.assertIn(f"new msg {msgid}", lines)
        self.assertIn(f"info msg {msgid}: bytes 15 from <s@far.test> qp 42 uid 7", lines)
        self.assertIn(f"starting delivery 1: msg {msgid} to local a@example.net", lines)
        self.assertIn("delivery 1: success: did_0+0+1/", lines)
        self.assertIn(f"starting delivery 2: msg {msgid} to remote b@far.test", lines)
        self.assertEqual(lines[-1], f"end msg {msgid}")
        self.assertIn("status: local 1/10 remote 0/20", lines)

    def test_label_appended(self):
        """With several queues the queue name ends the lines that carry it."""
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.start(self.engine(label="queue1"))
        self.assertIn(f"end msg {msgid} queue1", self.logs.lines)
        self.assertIn(f"new msg {msgid}", self.logs.lines)

    def test_failure_bounces_to_sender(self):
        """A permanent failure bounces to the sender, with the address the
        sender used (virtual-domain prefix removed), through the Enqueuer
        as a bounce; then the message is gone."""
        local = FakeAgent({"example.com-bob@example.com": DeliveryResult.failure(NOMAILBOX)})
        msgid = inject(self.queue, "s@far.test", ["bob@example.com"])
        self.start(self.engine(local=local))
        self.assertEqual(local.calls[0][2], "example.com-bob@example.com")
        [(sender, rcpts, data, invoked)] = self.enqueuer.queued
        self.assertEqual((sender, rcpts, invoked), ("", ["s@far.test"], "bounce"))
        self.assertIn(b"\n<bob@example.com>:\n" + NOMAILBOX.encode() + b"\n\n--- Enclosed", data)
        self.assertIn(b"Return-Path: <s@far.test>\nSubject: x\n\nhi\n", data)
        self.assertIn(f"delivery 1: failure: {NOMAILBOX.replace(' ', '_')}/", self.logs.lines)
        self.assertIn(f"bounce msg {msgid} qp 9999", self.logs.lines)
        self.assertGone(msgid)

    def test_double_and_triple_bounce(self):
        """A failed bounce goes to postmaster from ``#@[]``; a failed double
        bounce is discarded."""
        fail = DeliveryResult.failure("no")
        remote = FakeAgent({"x@far.test": fail, "y@far.test": fail})
        m1 = inject(self.queue, "", ["x@far.test"])
        m2 = inject(self.queue, "#@[]", ["y@far.test"])
        self.start(self.engine(remote=remote))
        self.clock.advance(0)
        self.assertEqual([(s, r) for s, r, _d, _i in self.enqueuer.queued],
                         [("#@[]", ["postmaster@mx.example.net"])])
        self.assertIn(f"triple bounce: discarding {self.queue.bounce(m2)}", self.logs.lines)
        self.assertGone(m1)
        self.assertGone(m2)

    def test_done_marking_in_place(self):
        """Each result is written before anything else: D in place, and for a
        failure the bounce record first."""
        local = FakeAgent(hold=True)
        msgid = inject(self.queue, "s@far.test",
                       ["a@example.net", "b@example.net", "c@example.net"])
        self.start(self.engine(local=local))
        self.assertEqual(len(local.pending), 3)
        local.pending[0].callback(DeliveryResult.success("ok"))
        self.assertEqual(self.queue.local(msgid).read_bytes(),
                         b"Da@example.net\0Tb@example.net\0Tc@example.net\0")
        local.pending[1].callback(DeliveryResult.failure("first\n\nsecond"))
        self.assertEqual(self.queue.local(msgid).read_bytes(),
                         b"Da@example.net\0Db@example.net\0Tc@example.net\0")
        self.assertEqual(self.queue.bounce(msgid).read_bytes(),
                         b"<b@example.net>:\nfirst\n/second\n\n")
        local.pending[2].callback(DeliveryResult.success("ok"))
        self.assertGone(msgid)
        self.assertEqual(len(self.enqueuer.queued), 1)

    def test_agent_error_is_deferral(self):
        """An agent that raises counts as a deferral and is logged."""
        class Broken:
            def deliver(self, *a):
                raise RuntimeError("boom")
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.start(self.engine(local=Broken()))
        self.assertIn("delivery 1: deferral: Unable_to_run_the_delivery_agent._(#4.3.0)/",
                      self.logs.lines)
        self.assertEqual(len(self.logs.failures), 1)
        self.assertTrue(self.queue.local(msgid).exists())


class ScheduleTests(EngineTestCase):

    def test_deferral_retried_on_schedule(self):
        """A deferral is retried at birth + (n + 20)²; the time is kept in the
        remote file's mtime so it survives a restart."""
        remote = FakeAgent({"b@far.test": [DeliveryResult.deferral("busy"),
                                           DeliveryResult.success("ok")]})
        msgid = inject(self.queue, "s@far.test", ["b@far.test"])
        engine = self.engine(remote=remote)
        self.start(engine)
        birth = self.queue.info(msgid).stat().st_mtime
        due = next_retry(birth, self.clock.seconds() - 1, "remote")  # the pass ran 1 s ago
        self.assertEqual(engine.scheduled(), {(msgid, "remote"): due})
        self.assertEqual(int(self.queue.remote(msgid).stat().st_mtime), due)
        self.assertIn("delivery 1: deferral: busy/", self.logs.lines)
        self.clock.advance(due - self.clock.seconds() - 1)
        self.assertEqual(len(remote.calls), 1)
        self.clock.advance(1)
        self.assertEqual(len(remote.calls), 2)
        self.assertGone(msgid)

    def test_sigalrm_retries_now(self):
        """run_now (SIGALRM) retries deferred messages at once."""
        local = FakeAgent({"a@example.net": [DeliveryResult.deferral("later"),
                                             DeliveryResult.success("ok")]})
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine = self.engine(local=local)
        self.start(engine)
        engine.run_now()
        self.clock.advance(0)
        self.assertEqual(len(local.calls), 2)
        self.assertGone(msgid)

    def test_queuelifetime(self):
        """Past queuelifetime a deferral becomes a failure with qmail's text."""
        msgid = 5555
        q = self.queue
        q.mess(msgid).write_bytes(b"m\n")
        q.info(msgid).write_bytes(b"Fs@far.test\0")
        old = self.clock.seconds() - 604801
        os.utime(q.info(msgid), (old, old))
        q.remote(msgid).write_bytes(b"Tb@far.test\0")
        remote = FakeAgent({"b@far.test": DeliveryResult.deferral("Connection refused.")})
        self.start(self.engine(remote=remote))
        [(_s, _r, data, _i)] = self.enqueuer.queued
        self.assertIn(b"<b@far.test>:\nConnection refused.\n" + TOO_LONG.encode() + b"\n", data)
        self.assertIn("delivery 1: failure: Connection_refused./I'm_not_going_to_try_again;"
                      "_this_message_has_been_in_the_queue_too_long./", self.logs.lines)
        self.assertGone(msgid)

    def test_concurrency_limit(self):
        """No more than concurrencylocal deliveries run at once."""
        local = FakeAgent(hold=True)
        msgid = inject(self.queue, "s@far.test", [f"u{i}@example.net" for i in range(5)])
        self.start(self.engine(local=local, concurrency={"local": 2, "remote": 20}))
        self.assertEqual(len(local.pending), 2)
        self.assertIn("status: local 2/2 remote 0/20", self.logs.lines)
        local.pending[0].callback(DeliveryResult.success("ok"))
        self.assertEqual(len(local.pending), 3)
        for i in range(1, 5):
            local.pending[i].callback(DeliveryResult.success("ok"))
            self.assertLessEqual(len([d for d in local.pending if not d.called]), 2)
        self.assertEqual(len(local.calls), 5)
        self.assertGone(msgid)


class RecoveryTests(EngineTestCase):

    def test_partial_done_records(self):
        """After a crash only the recipients still marked T are delivered."""
        q = self.queue
        msgid = 7001
        q.mess(msgid).write_bytes(b"m\n")
        q.info(msgid).write_bytes(b"Fs@far.test\0")
        q.local(msgid).write_bytes(b"Da@example.net\0Tb@example.net\0")
        q.remote(msgid).write_bytes(b"Dc@far.test\0")
        self.start(self.engine())
        self.assertEqual([c[2] for c in self.local.calls], ["b@example.net"])
        self.assertEqual(self.remote.calls, [])
        self.assertGone(msgid)

    def test_todo_left_with_stale_outputs(self):
        """A crash during todo processing: it is redone, each recipient
        delivered exactly once."""
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.queue.info(msgid).write_bytes(b"Fs@far.test\0")
        self.queue.local(msgid).write_bytes(b"Ta@exam")
        self.start(self.engine())
        self.assertEqual([c[2] for c in self.local.calls], ["a@example.net"])
        self.assertGone(msgid)

    def test_bounce_file_left(self):
        """All recipients done, bounce not yet sent: it is sent, then the
        message removed."""
        q = self.queue
        msgid = 7002
        q.mess(msgid).write_bytes(b"m\n")
        q.info(msgid).write_bytes(b"Fs@far.test\0")
        q.bounce(msgid).write_bytes(b"<a@example.net>:\nno\n\n")
        self.start(self.engine())
        self.assertEqual(len(self.enqueuer.queued), 1)
        self.assertGone(msgid)

    def test_info_only(self):
        """A crash between removing local/remote and info: finished at start."""
        q = self.queue
        msgid = 7003
        q.mess(msgid).write_bytes(b"m\n")
        q.info(msgid).write_bytes(b"Fs@far.test\0")
        self.start(self.engine())
        self.assertIn(f"end msg {msgid}", self.logs.lines)
        self.assertEqual(self.enqueuer.queued, [])
        self.assertGone(msgid)

    def test_deferred_time_survives_restart(self):
        """A remote file whose mtime lies in the future is not tried before."""
        q = self.queue
        msgid = 7004
        q.mess(msgid).write_bytes(b"m\n")
        q.info(msgid).write_bytes(b"Fs@far.test\0")
        q.remote(msgid).write_bytes(b"Tb@far.test\0")
        later = self.clock.seconds() + 300
        os.utime(q.remote(msgid), (later, later))
        engine = self.engine()
        self.start(engine)
        self.assertEqual(self.remote.calls, [])
        self.clock.advance(300)
        self.assertEqual(len(self.remote.calls), 1)

    def test_stop_drains_in_flight(self):
        """stopService waits for deliveries in flight, starts no new one, and
        leaves untried recipients T for the next start."""
        local = FakeAgent(hold=True)
        msgid = inject(self.queue, "s@far.test", ["a@example.net", "b@example.net"])
        engine = self.engine(local=local, concurrency={"local": 1, "remote": 20})
        self.start(engine)
        stopped = engine.stopService()
        self.assertNoResult(stopped)
        local.pending[0].callback(DeliveryResult.success("ok"))
        self.successResultOf(stopped)
        self.assertEqual(len(local.calls), 1)
        self.assertEqual(self.queue.local(msgid).read_bytes(),
                         b"Da@example.net\0Tb@example.net\0")
        self.assertTrue(self.queue.info(msgid).exists())


class FailingEnqueuer(FakeEnqueuer):
    """Refuses the first bounce, as a full disk would."""

    def __init__(self):
        super().__init__()
        self.refuse = 1

    def begin(self, env=None, **kw):
        incoming = super().begin(env, **kw)
        if self.refuse:
            self.refuse -= 1
            incoming.finish = lambda *a, **k: defer.fail(QueueError(53, "disk full"))
        return incoming


class BounceRetryTests(EngineTestCase):

    def test_bounce_injection_retried(self):
        """A bounce that cannot be queued is tried again 123 s later; the
        bounce file and the message stay until it is."""
        self.enqueuer = FailingEnqueuer()
        local = FakeAgent({"a@example.net": DeliveryResult.failure("no")})
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine = self.engine(local=local)
        self.start(engine)
        self.assertEqual(self.enqueuer.queued, [])
        self.assertTrue(self.queue.bounce(msgid).exists())
        self.assertEqual(len(self.logs.failures), 1)
        self.clock.advance(123)
        self.assertEqual(len(self.enqueuer.queued), 1)
        self.assertGone(msgid)


class PassFailureTests(EngineTestCase):

    def test_disk_error_retried_later(self):
        """An unexpected error in a pass (here: the D cannot be written) is
        logged and the job is tried again SLEEP_SYSFAIL seconds later."""
        real = engine_module.mark_done
        calls = []

        def flaky(*args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)

        self.patch(engine_module, "mark_done", flaky)
        # two recipients: each result is marked D as it comes (a lone one is
        # recorded by removing the channel file)
        msgid = inject(self.queue, "s@far.test", ["a@example.net", "b@example.net"])
        self.start(self.engine())
        self.assertEqual(len(self.logs.failures), 1)
        self.assertTrue(self.queue.local(msgid).exists())
        self.assertEqual(len(self.local.calls), 2)
        self.clock.advance(123)
        self.assertEqual(len(self.local.calls), 3)   # only the unmarked one again
        self.assertGone(msgid)


class BounceRulesTests(EngineTestCase):

    def test_bounce_envrules(self):
        """bounce.envrules lines matching the original sender set the
        environment the bounce is queued with; no match, no override."""
        rules = tuple(parse_envrules(["*@far.test:QUEUEDIR=/var/bq,X="]))
        fail = DeliveryResult.failure("no")
        local = FakeAgent({"a@example.net": fail, "b@example.net": fail})
        inject(self.queue, "s@far.test", ["a@example.net"])
        inject(self.queue, "s@near.test", ["b@example.net"])
        self.start(self.engine(local=local, env={"X": "1", "Y": "2"}, bounce_rules=rules))
        self.assertEqual([dict(e) if e is not None else None for e in self.enqueuer.envs],
                         [{"QUEUEDIR": "/var/bq", "Y": "2"}, None])


class SenderTests(unittest.SynchronousTestCase):

    def test_verp_sender(self):
        """``owner-@host-@[]`` becomes ``owner-box=rhost@host`` per recipient
        (qmail-send's senderadd); other senders are unchanged."""
        self.assertEqual(sender_for("owner-@lists.test-@[]", "box@r.test"),
                         "owner-box=r.test@lists.test")
        self.assertEqual(sender_for("a@b", "box@r.test"), "a@b")
        self.assertEqual(sender_for("x-@[]", "box@r.test"), "x-@[]")


class BounceProcessorTests(EngineTestCase):

    def bounce_with(self, code):
        self.runs = []

        def fake(program, args, env, reactor=None):
            self.runs.append((program, args))
            return defer.succeed(code)

        fail = DeliveryResult.failure("Sorry, no mailbox here by that name. (#5.1.1)")
        local = FakeAgent({"a@example.net": fail})
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.start(self.engine(local=local, run_process=fake,
                               env={"BOUNCEPROCESSOR": "/usr/local/bin/bp"}))
        return msgid

    def test_arguments_and_send(self):
        """Exit 0 sends the bounce; the program gets mess, bounce file, report,
        bounce sender, original recipient and bounce recipient."""
        msgid = self.bounce_with(0)
        [(program, args)] = self.runs
        self.assertEqual(program, "/usr/local/bin/bp")
        self.assertEqual(args.argv(), [
            str(self.queue.mess(msgid)), str(self.queue.bounce(msgid)),
            "Sorry, no mailbox here by that name. (#5.1.1)\n\n", "", "<a@example.net>",
            "s@far.test"])
        self.assertEqual(len(self.enqueuer.queued), 1)
        self.assertGone(msgid)

    def test_discard(self):
        """Exit 1 discards the bounce and the message is finished."""
        msgid = self.bounce_with(1)
        self.assertEqual(self.enqueuer.queued, [])
        self.assertIn(f"delete bounce: discarding {self.queue.bounce(msgid)}", self.logs.lines)
        self.assertGone(msgid)

    def test_other_exit_retries(self):
        """Any other exit keeps the bounce for a later try."""
        msgid = self.bounce_with(111)
        self.assertEqual(self.enqueuer.queued, [])
        self.assertTrue(self.queue.bounce(msgid).exists())
        self.assertEqual(len(self.logs.failures), 1)
        self.clock.advance(123)
        self.assertEqual(len(self.runs), 2)
