"""Remove the half-written messages of writers that died (kill -9, crash).

Our :class:`~indimail.queue.enqueue.QueueWriter` keeps its
``pid/<pid>.<time>.<seq>`` file (the same inode as the message) until the
todo link exists.  A pid file whose process is gone therefore marks a
message that was never acknowledged: its ``mess`` and ``intd`` files can go
at once, instead of after qmail's 36-hour rule.  Blocking: run in a thread.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

from indimail.queue.layout import QueueDir


def pid_alive(pid: int) -> bool:
    """Whether a process *pid* exists and runs (one we may not signal counts
    too; a zombie, which will never write again, does not)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not is_zombie(pid)


def is_zombie(pid: int) -> bool:
    """Whether *pid* has ended but not been reaped (Linux ``/proc``; False
    where that cannot be told)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": the state follows the last ")" (comm may hold one)
    return stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X")


def writer_pid(name: str) -> int | None:
    """The pid in a ``<pid>.<time>.<seq>`` file name, None for other names."""
    head = name.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def reap_dead_writers(queue: QueueDir,
                      alive: Callable[[int], bool] = pid_alive) -> list[Path]:
    """Remove the files of dead writers in *queue*; returns what went."""
    removed: list[Path] = []
    try:
        entries = list(queue.pid_dir.iterdir())
    except FileNotFoundError:
        return removed
    for pidfile in entries:
        pid = writer_pid(pidfile.name)
        if pid is None or alive(pid):
            continue
        try:
            msgid = pidfile.stat().st_ino
        except FileNotFoundError:
            continue
        queued = queue.todo(msgid).exists() or queue.info(msgid).exists()
        if not queued:
            removed += [p for p in (queue.intd(msgid), queue.mess(msgid)) if _unlink(p)]
        if _unlink(pidfile):
            removed.append(pidfile)
    return removed


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return False
