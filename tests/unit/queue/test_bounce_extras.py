"""indimail-mta's bounce extras: the X-Bounced-Address header, BOUNCEQUEUE
(a qmail-queue program for bounces, chosen per sender by bounce.envrules)."""

from __future__ import annotations

import os
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from indimail.config.envrules import parse_envrules
from indimail.delivery.result import DeliveryResult
from indimail.queue.bounce import BounceConfig, bounced_address, build_bounce
from indimail.queue.todo import Rewriter
from indimail.send.config import SendConfig
from indimail.send.engine import QueueEngine
from indimail.send.hooks import QueueProgramError, queue_envelope, queue_with_program
from tests.unit.send.helpers import (FakeAgent, FakeEnqueuer, LogCollector, inject, make_queue,
                                     run_sync, tempdir)

CONFIG = BounceConfig(bouncehost="mx.example.net", doublebounceto="postmaster@mx.example.net")


class HeaderTests(unittest.SynchronousTestCase):

    def test_bounced_address(self):
        """The first failed recipient of the bounce file, in angle brackets."""
        self.assertEqual(bounced_address(b"<a@b.test>:\nno\n\n<c@d>:\nx\n\n"), "<a@b.test>")
        self.assertIsNone(bounced_address(b""))
        self.assertIsNone(bounced_address(b"junk"))

    def test_header_after_date(self):
        """X-Bounced-Address comes right after Date, as injectbounce() writes."""
        data = build_bounce(sender="s@far.test", msgid=1, birth=5,
                            bounce_text=b"<a@b.test>:\nno\n\n", message=b"", message_size=0,
                            config=CONFIG, now=0, bounced="<a@b.test>")
        lines = data.split(b"\n")
        self.assertEqual(lines[0], b"Date: 1 Jan 1970 00:00:00 -0000")
        self.assertEqual(lines[1], b"X-Bounced-Address: <a@b.test>")
        self.assertEqual(lines[2], b"From: MAILER-DAEMON@mx.example.net")
        plain = build_bounce(sender="s@far.test", msgid=1, birth=5, bounce_text=b"",
                             message=b"", message_size=0, config=CONFIG, now=0)
        self.assertNotIn(b"X-Bounced-Address", plain)

    def test_envelope(self):
        """qmail-queue's envelope bytes."""
        self.assertEqual(queue_envelope("", ["s@x"]), b"F\0Ts@x\0\0")


class EngineBounceTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.queue = make_queue(tempdir(self))
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.enqueuer = FakeEnqueuer()
        self.programs = []

    def engine(self, **kw):
        kw.setdefault("rewriter", Rewriter(frozenset({"example.net"})))
        kw.setdefault("bounce", CONFIG)
        cfg = SendConfig(**kw)
        local = FakeAgent({"a@example.net": DeliveryResult.failure("No mailbox. (#5.1.1)")})

        async def program(path, data, sender, recipient, env, reactor=None):
            self.programs.append((path, data, sender, recipient, dict(env)))
            return 4242
        engine = QueueEngine(self.queue, config=lambda: cfg, local=local, remote=FakeAgent(),
                             enqueuer=self.enqueuer, reactor=self.clock, blocking=run_sync,
                             watch_trigger=False, queue_program=program)
        self.logs = LogCollector()
        engine.log = self.logs.logger()
        self.addCleanup(lambda: engine.running and engine.stopService())
        engine.startService()
        self.clock.advance(0)
        return engine

    def test_bounce_has_header(self):
        """A queued bounce names the failed address in X-Bounced-Address."""
        inject(self.queue, "s@far.test", ["a@example.net"])
        self.engine()
        [(sender, rcpts, data, _invoked)] = self.enqueuer.queued
        self.assertIn(b"\nX-Bounced-Address: <a@example.net>\nFrom: ", data)

    def test_bouncequeue_program(self):
        """BOUNCEQUEUE: the bounce goes to that program (sender <>, recipient
        the original sender), not to the engine's queue writer; the log's qp
        is the program's pid."""
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.engine(env={"BOUNCEQUEUE": "/usr/bin/qmail-nullqueue"})
        self.assertEqual(self.enqueuer.queued, [])
        [(path, data, sender, recipient, _env)] = self.programs
        self.assertEqual((path, sender, recipient), ("/usr/bin/qmail-nullqueue", "", "s@far.test"))
        self.assertIn(b"X-Bounced-Address: <a@example.net>", data)
        self.assertIn(f"bounce msg {msgid} qp 4242", self.logs.lines)

    def test_bouncequeue_per_sender(self):
        """bounce.envrules can set BOUNCEQUEUE for one sender only."""
        rules = tuple(parse_envrules(["support@far.test:BOUNCEQUEUE=/bin/nq"]))
        inject(self.queue, "support@far.test", ["a@example.net"])
        inject(self.queue, "other@far.test", ["a@example.net"])
        self.engine(bounce_rules=rules)
        self.assertEqual([(p[0], p[3]) for p in self.programs], [("/bin/nq", "support@far.test")])
        self.assertEqual([q[1] for q in self.enqueuer.queued], [["other@far.test"]])


class ProgramTests(unittest.TestCase):
    """queue_with_program runs a real qmail-queue style program."""

    timeout = 60

    def script(self, body: str) -> str:
        base = tempdir(self)
        path = os.path.join(base, "qq")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)
        self.base = base
        return path

    def test_message_and_envelope(self):
        """The message arrives on fd 0, the envelope on fd 1; exit 0 gives
        the pid."""
        program = self.script('cat > "$OUT.mess"; cat <&1 > "$OUT.env"; exit 0\n')

        async def run():
            out = os.path.join(self.base, "out")
            pid = await queue_with_program(program, b"Subject: b\n\nbody\n", "", "s@x",
                                           {"OUT": out}, reactor=reactor)
            self.assertGreater(pid, 0)
            with open(out + ".mess", "rb") as f:
                self.assertEqual(f.read(), b"Subject: b\n\nbody\n")
            with open(out + ".env", "rb") as f:
                self.assertEqual(f.read(), b"F\0Ts@x\0\0")
        return defer.ensureDeferred(run())

    def test_failure(self):
        """A non-zero exit (or a missing program) raises: retried later."""
        program = self.script("cat >/dev/null; exit 81\n")

        async def run():
            with self.assertRaises(QueueProgramError) as caught:
                await queue_with_program(program, b"x\n", "", "s@x", {}, reactor=reactor)
            self.assertEqual(caught.exception.code, 81)
            with self.assertRaises(QueueProgramError):
                await queue_with_program(os.path.join(self.base, "none"), b"x\n", "", "s@x", {},
                                         reactor=reactor)
        return defer.ensureDeferred(run())
