"""Dynamic queues, as ``qscheduler -d``: more queues when the load is high.

Every ``QUEUE_INTERVAL`` seconds the average load of the numbered queues —
deliveries in progress as a percentage of their concurrency limits — is
compared with ``QUEUE_LOAD``; above it, and below ``QUEUE_MAX`` queues, the
next ``queueN`` is created (queue-fix) and gets its engine.  The number of
active queues is published in ``<QUEUE_BASE>/.queue_count`` so queue clients
can spread new mail over them and a restarted service starts them all
again.  Queues are never retired while running: a queue that stops getting
mail simply idles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

from twisted.application import service
from twisted.internet import defer, task

from indimail.fastlog import Logger
from indimail.queue.fix import queue_fix
from indimail.queue.layout import COUNT_FILE, QueueDir, split_from_env

QUEUE_INTERVAL = 5.0
DEFAULT_LOAD = 80.0


def dynamic_enabled(env: Mapping[str, str]) -> bool:
    """``QUEUE_DYNAMIC`` set to anything but empty or 0 (``qscheduler -d``)."""
    return env.get("QUEUE_DYNAMIC", "").strip() not in ("", "0")


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text is not None and text.strip() else default
    except ValueError:
        return default


def read_queue_count(base: Path) -> int | None:
    """Blocking: the published number of active queues."""
    try:
        return int((Path(base) / COUNT_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_queue_count(base: Path, count: int) -> None:
    """Blocking: publish *count* atomically (write, then rename)."""
    path = Path(base) / COUNT_FILE
    tmp = path.with_name(f"{COUNT_FILE}.{os.getpid()}")
    tmp.write_text(f"{count}\n")
    os.replace(tmp, path)


class DynamicQueues(service.Service):
    """Grows the number of queues of a :class:`SendService` with its load."""

    log = Logger()

    def __init__(self, send, env: Mapping[str, str], base: Path, *, reactor,
                 blocking: Callable[..., defer.Deferred], interval: float | None = None):
        self.send = send
        self.base = Path(base)
        self.reactor = reactor
        self._blocking = blocking
        self.split = split_from_env(env)
        self.start = int(_number(env.get("QUEUE_START"), 1)) or 1
        self.count = max(int(_number(env.get("QUEUE_COUNT"), 1)), 1)
        self.maximum = max(int(_number(env.get("QUEUE_MAX"), self.count)), self.count)
        self.threshold = _number(env.get("QUEUE_LOAD"), DEFAULT_LOAD)
        self.interval = interval if interval is not None else _number(
            env.get("QUEUE_INTERVAL"), QUEUE_INTERVAL)
        self._loop: task.LoopingCall | None = None
        self._growing = False

    def queue(self, number: int) -> QueueDir:
        return QueueDir(self.base / f"queue{number}", self.split)

    def active(self) -> list:
        """The engines of the numbered queues this service manages."""
        names = {f"queue{n}" for n in range(self.start, self.start + self.maximum)}
        return [e for e in self.send.engines if e.queue.name in names]

    def load(self) -> float:
        engines = self.active()
        return sum(e.load() for e in engines) / len(engines) if engines else 0.0

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: self.log.failure("qscheduler: load check failed", f))
        d = defer.ensureDeferred(self._resume())
        d.addErrback(lambda f: self.log.failure("qscheduler: unable to resume queues", f))
        return d

    async def _resume(self) -> None:
        """Start again every queue a previous run had grown to."""
        published = await self._blocking(read_queue_count, self.base) or 0
        while len(self.active()) < min(published, self.maximum) and self.running:
            await self.grow()

    def stopService(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return super().stopService()

    def check(self) -> None:
        """One load check: grow by one queue when the average is too high."""
        if self._growing or len(self.active()) >= self.maximum:
            return
        load = self.load()
        if load > self.threshold:
            self.log.info("{line}", line=f"info: qscheduler: queue load {load:.1f}% "
                                         f"above {self.threshold:g}%")
            d = defer.ensureDeferred(self.grow())
            d.addErrback(lambda f: self.log.failure("qscheduler: unable to add a queue", f))

    async def grow(self) -> None:
        self._growing = True
        try:
            have = {e.queue.name for e in self.active()}
            number = next(n for n in range(self.start, self.start + self.maximum)
                          if f"queue{n}" not in have)
            queue = self.queue(number)
            await self._blocking(queue_fix, queue)
            self.send.add_queue(queue, label=queue.name)
            count = len(self.active())
            await self._blocking(write_queue_count, self.base, count)
            self.log.info("{line}", line=f"info: qscheduler: queue count {count} "
                                         f"(started {queue.name})")
        finally:
            self._growing = False
