"""Where the files of one queue live, and how a queue is chosen.

Byte-compatible with indimail-mta (reference §1): ``mess intd todo info
local remote`` are split into ``0..split-1`` sub-directories, ``bounce pid
trash`` are not, ``lock/`` holds ``sendmutex``, ``tcpto`` and the ``trigger``
FIFO.  A file of message ``id`` lives at ``<dir>/<id % split>/<id>``.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_SPLIT = 151
SPLIT_DIRS = ("mess", "intd", "todo", "info", "local", "remote")
FLAT_DIRS = ("bounce", "pid", "trash")


def split_from_env(env: Mapping[str, str]) -> int:
    """``CONFSPLIT`` may lower the compiled default of 151, never raise it."""
    try:
        value = int(env.get("CONFSPLIT", ""))
    except ValueError:
        return DEFAULT_SPLIT
    return value if 0 < value <= DEFAULT_SPLIT else DEFAULT_SPLIT


@dataclass(frozen=True)
class QueueDir:
    """One queue directory (``queueN``) and its split."""

    path: Path
    split: int = DEFAULT_SPLIT

    def __post_init__(self):
        object.__setattr__(self, "_root", str(self.path))
        # pulled after every queued message: made once
        object.__setattr__(self, "_trigger", self.path / "lock" / "trigger")

    @property
    def root(self) -> str:
        """The queue directory as a string (``os`` calls take it as it is)."""
        return self._root

    def file(self, kind: str, msgid: int) -> str:
        """:meth:`sub` as a string: the queue's blocking file work makes a
        score of these per message, and ``os`` takes them as they are
        (building a ``Path`` costs ten times as much)."""
        if kind in SPLIT_DIRS:
            return f"{self._root}/{kind}/{msgid % self.split}/{msgid}"
        return f"{self._root}/{kind}/{msgid}"

    def sub(self, kind: str, msgid: int) -> Path:
        """Path of message *msgid*'s file in directory *kind*."""
        return Path(self.file(kind, msgid))

    def mess(self, msgid: int) -> Path:
        return self.sub("mess", msgid)

    def intd(self, msgid: int) -> Path:
        return self.sub("intd", msgid)

    def todo(self, msgid: int) -> Path:
        return self.sub("todo", msgid)

    def info(self, msgid: int) -> Path:
        return self.sub("info", msgid)

    def local(self, msgid: int) -> Path:
        return self.sub("local", msgid)

    def remote(self, msgid: int) -> Path:
        return self.sub("remote", msgid)

    def bounce(self, msgid: int) -> Path:
        return self.sub("bounce", msgid)

    @property
    def pid_dir(self) -> Path:
        return self.path / "pid"

    @property
    def lock_dir(self) -> Path:
        return self.path / "lock"

    @property
    def trigger(self) -> Path:
        return self._trigger

    @property
    def name(self) -> str:
        return self.path.name


def configured_queues(env: Mapping[str, str], default_base: Path) -> list[QueueDir]:
    """All queues the environment names: ``QUEUEDIR`` alone, else
    ``QUEUE_BASE/queueN`` for N in ``QUEUE_START .. QUEUE_START+QUEUE_COUNT-1``."""
    return list(_queues(env.get("QUEUEDIR"), env.get("QUEUE_BASE"), env.get("QUEUE_START"),
                        env.get("QUEUE_COUNT"), env.get("CONFSPLIT"), os.fspath(default_base)))


@functools.lru_cache(maxsize=64)
def _queues(queuedir: str | None, queue_base: str | None, queue_start: str | None,
            queue_count: str | None, confsplit: str | None,
            default_base: str) -> tuple[QueueDir, ...]:
    """:func:`configured_queues` of these variables, made once: every SMTP
    message picks its queue, and building the QueueDirs was 3 % of a worker."""
    split = split_from_env({} if confsplit is None else {"CONFSPLIT": confsplit})
    if queuedir:
        return (QueueDir(Path(queuedir), split),)
    base = Path(queue_base or default_base)
    start = _positive(queue_start, 1)
    count = _positive(queue_count, 1)
    return tuple(QueueDir(base / f"queue{n}", split) for n in range(start, start + count))


def select_queue(env: Mapping[str, str], default_base: Path,
                 rng: random.Random | None = None) -> QueueDir:
    """The queue a new message goes to: a random one of the configured queues
    (qmail-multi's choice), or ``QUEUEDIR`` when set.  Under ``QUEUE_DYNAMIC``
    the count the delivery side published (``<QUEUE_BASE>/.queue_count``)
    replaces ``QUEUE_COUNT`` when it is larger."""
    if env.get("QUEUE_DYNAMIC") and not env.get("QUEUEDIR"):
        base = Path(env.get("QUEUE_BASE") or default_base)
        grown = published_count(base)
        if grown and grown > _positive(env.get("QUEUE_COUNT"), 1):
            env = {**env, "QUEUE_COUNT": str(grown)}
    queues = configured_queues(env, default_base)
    if len(queues) == 1:
        return queues[0]
    return (rng or random).choice(queues)


def _positive(text: str | None, default: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value > 0 else default


COUNT_FILE = ".queue_count"
_published: dict[str, tuple[int, int | None]] = {}   # path -> (mtime_ns, count)


def published_count(base: Path) -> int | None:
    """The active queue count the delivery side wrote (dynamic mode), read
    again only when the file changes."""
    path = os.path.join(base, COUNT_FILE)
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    cached = _published.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        with open(path) as f:
            count = int(f.read().strip())
    except (OSError, ValueError):
        count = None
    _published[path] = (stamp, count)
    return count
