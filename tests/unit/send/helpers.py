"""Shared fixtures of the queue-engine tests: a real queue directory, fake
delivery agents and a fake Enqueuer, a synchronous disk runner."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger

from indimail.delivery.result import DeliveryResult
from indimail.queue.envelope import Envelope
from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir


def tempdir(case) -> str:
    """A fresh directory outside the work tree, removed after the test
    (``mktemp`` would litter the current directory under pytest)."""
    path = tempfile.mkdtemp(prefix="indimail-send-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def make_queue(base: str, split: int = 3) -> QueueDir:
    os.makedirs(base, exist_ok=True)
    queue = QueueDir(Path(base).absolute() / "queue1", split)
    queue_fix(queue)
    return queue


_next_id = [1000]


def inject(queue: QueueDir, sender: str, recipients: list[str], body: bytes = b"Subject: x\n\nhi\n",
           *, msgid: int | None = None, uid: int = 7, pid: int = 42, extra: str | None = None) -> int:
    """Put a message in the queue as qmail-queue leaves it (mess, intd, todo)."""
    if msgid is None:
        _next_id[0] += 1
        msgid = _next_id[0]
    queue.mess(msgid).write_bytes(body)
    env = Envelope(sender, list(recipients), uid=uid, pid=pid, extra_headers=extra)
    queue.intd(msgid).write_bytes(env.todo_bytes())
    os.link(queue.intd(msgid), queue.todo(msgid))
    return msgid


def run_sync(f, *args, **kwargs) -> defer.Deferred:
    """The engine's disk runner, synchronous for Clock-driven tests."""
    return defer.maybeDeferred(f, *args, **kwargs)


class FakeAgent:
    """A delivery agent: answers from *results* (address → DeliveryResult or
    a list consumed in order), or holds the call open when *hold* is set."""

    def __init__(self, results=None, hold: bool = False):
        self.results = dict(results or {})
        self.hold = hold
        self.calls: list[tuple] = []
        self.pending: list[defer.Deferred] = []

    def deliver(self, queue, msgid, sender, recipient, qqeh=None):
        self.calls.append((msgid, sender, recipient, qqeh))
        if self.hold:
            d = defer.Deferred()
            self.pending.append(d)
            return d
        result = self.results.get(recipient, DeliveryResult.success("did 0+0+1"))
        if isinstance(result, list):
            result = result.pop(0) if len(result) > 1 else result[0]
        return defer.succeed(result)


class FakeIncoming:
    def __init__(self, owner, invoked, env=None):
        self.owner = owner
        self.invoked = invoked
        self.env = env
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def finish(self, sender, recipients, extra_headers=None):
        self.owner.queued.append((sender, list(recipients), self.data, self.invoked))
        self.owner.envs.append(self.env)
        return defer.succeed(self.owner.next_id)

    def abort(self):
        return defer.succeed(None)


class FakeEnqueuer:
    """Records the bounces the engine queues."""

    def __init__(self, next_id: int = 9999):
        self.queued: list[tuple] = []
        self.envs: list = []
        self.next_id = next_id

    def begin(self, env=None, *, invoked="uid", remote_ip=None, uid=None):
        return FakeIncoming(self, invoked, env)


class LogCollector:
    """A Logger observer keeping the formatted lines."""

    def __init__(self):
        self.lines: list[str] = []
        self.failures: list = []

    def __call__(self, event):
        if "line" in event:
            self.lines.append(event["line"])
        if "log_failure" in event:
            self.failures.append(event["log_failure"])

    def logger(self) -> Logger:
        return Logger(observer=self)
