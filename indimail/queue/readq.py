"""Reading a queue for reports: what qmail-qread and qmail-qstat show.

Formats follow upstream (``qmail-qread.c``, ``process_queue.c``,
``qmail-qstat``): one stats line per message

``21 Nov 2026 22:40:00 GMT  5/#12345  678  <sender> `` (+ `` bouncing``)

then ``\\tlocal\\t<addr>`` / ``\\tremote\\t<addr>`` per recipient, prefixed by
``  done`` once delivered.  The date is the birth time (mtime of the info
file) in GMT, the number before ``/#`` the split sub-directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from .envelope import EnvelopeError, Envelope, Info, parse_recipients
from .layout import QueueDir, split_from_env

UPSTREAM_QUEUE_COUNT = 10
EXTRA_QUEUES = ("nqueue", "slowq", "qmta")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def report_queues(env: Mapping[str, str], default_base: Path) -> list[QueueDir]:
    """The queues a report walks: ``QUEUEDIR`` alone when set, else
    ``QUEUE_BASE/queueN`` from ``QUEUE_START`` for ``QUEUE_COUNT`` queues
    (upstream's default 10), stopping at the first missing one, then the
    extra queues ``nqueue``, ``slowq``, ``qmta`` that exist."""
    split = split_from_env(env)
    if env.get("QUEUEDIR"):
        return [QueueDir(Path(env["QUEUEDIR"]), split)]
    base = Path(env.get("QUEUE_BASE") or default_base)
    start = _int(env.get("QUEUE_START"), 1)
    count = _int(env.get("QUEUE_COUNT"), UPSTREAM_QUEUE_COUNT)
    out = []
    for n in range(start, start + count):
        path = base / f"queue{n}"
        if not path.exists():
            break
        out.append(QueueDir(path, split))
    out += [QueueDir(base / name, split) for name in EXTRA_QUEUES if (base / name).exists()]
    return out


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def date822(when: float) -> str:
    """qmail's ``date822fmt`` without the zone: ``21 Nov 2026 22:40:00``."""
    t = time.gmtime(when)
    return (f"{t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")


@dataclass
class Entry:
    """One message as qmail-qread shows it."""

    msgid: int
    split_dir: int
    birth: float
    size: int
    sender: str
    bouncing: bool = False
    recipients: list[tuple[str, str, bool]] = field(default_factory=list)

    def stats_line(self) -> str:
        line = (f"{date822(self.birth)} GMT  {self.split_dir}/#{self.msgid}  "
                f"{self.size}  <{self.sender}> ")
        if self.bouncing:
            line += " bouncing"
        return "".join(c if 32 <= ord(c) <= 126 else "_" for c in line)

    def lines(self) -> list[str]:
        """The stats line and one line per recipient; nothing when the
        message has no recipient records (as upstream)."""
        if not self.recipients:
            return []
        out = [self.stats_line()]
        for channel, address, done in self.recipients:
            out.append(("  done" if done else "") + f"\t{channel}\t{address}")
        return out


@dataclass
class Counts:
    local: int = 0
    remote: int = 0
    bounce: int = 0
    todo: int = 0

    def add(self, other: "Counts") -> None:
        self.local += other.local
        self.remote += other.remote
        self.bounce += other.bounce
        self.todo += other.todo


def _ids(top: Path) -> Iterator[int]:
    """Message ids found under a split directory, in directory order."""
    if not top.is_dir():
        return
    for sub in sorted(top.iterdir(), key=lambda p: (not p.name.isdigit(), p.name.zfill(8))):
        if not sub.is_dir():
            continue
        for entry in sorted(sub.iterdir(), key=lambda p: p.name.zfill(20)):
            if entry.name.isdigit():
                yield int(entry.name)


def _read_entry_file(queue: QueueDir, msgid: int, path: Path, parse, warn):
    """``(mess size, mtime of path, parse(path's bytes))``, or None after a
    warning (qmail-qread's wording) when either file cannot be read or parsed."""
    try:
        size = os.stat(queue.mess(msgid)).st_size
        st = os.stat(path)
        return size, st.st_mtime, parse(path.read_bytes())
    except (OSError, EnvelopeError) as e:
        if warn:
            warn(f"qmail-qread: warn: trouble with #{msgid}: {e}")
        return None


def read_queue(queue: QueueDir, local: bool = True, remote: bool = True,
               warn=None) -> Iterator[Entry]:
    """Preprocessed messages (those with an ``info`` file)."""
    for msgid in _ids(queue.path / "info"):
        found = _read_entry_file(queue, msgid, queue.info(msgid), Info.parse, warn)
        if found is None:
            continue
        size, mtime, info = found
        entry = Entry(msgid, msgid % queue.split, mtime, size, info.sender,
                      queue.bounce(msgid).exists())
        for channel, wanted, path in (("local", local, queue.local(msgid)),
                                      ("remote", remote, queue.remote(msgid))):
            if not wanted:
                continue
            try:
                records = parse_recipients(path.read_bytes())
            except FileNotFoundError:
                continue
            except (OSError, EnvelopeError) as e:
                if warn:
                    warn(f"qmail-qread: warn: trouble with #{msgid}: {e}")
                continue
            entry.recipients += [(channel, r.address, r.done) for r in records]
        yield entry


def read_todo(queue: QueueDir, warn=None) -> Iterator[Entry]:
    """Messages not yet preprocessed (in ``todo``)."""
    for msgid in _ids(queue.path / "todo"):
        found = _read_entry_file(queue, msgid, queue.todo(msgid), Envelope.from_todo, warn)
        if found is None:
            continue
        size, mtime, env = found
        yield Entry(msgid, msgid % queue.split, mtime, size, env.sender,
                    recipients=[("todo", r, False) for r in env.recipients])


def count_files(top: Path) -> int:
    """Files one level below the split sub-directories of *top*."""
    if not top.is_dir():
        return 0
    total = 0
    for sub in top.iterdir():
        if sub.is_dir():
            total += sum(1 for _ in sub.iterdir())
    return total


def qstat(queue: QueueDir) -> tuple[int, int]:
    """(messages in queue, messages not yet preprocessed): files in
    ``mess/*/`` and in ``todo/*/``, as the upstream script counts them."""
    return count_files(queue.path / "mess"), count_files(queue.path / "todo")
