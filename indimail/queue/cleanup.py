"""Stale-file cleanup of one queue (qmail-send's cleanup pass, qmail-clean).

A message file nobody will ever use again is one whose writer died: a
``mess`` file with no todo/intd/info/local/remote/bounce, an ``intd`` file
with no ``todo``, a ``pid/`` file — each older than 36 hours (reference §2;
qmail-queue gives up after 24 h, so nothing that old is still being
written).  At start, files of a queue writer that no longer runs are stale
at once.  Blocking: run it in a thread.
"""

from __future__ import annotations

import os
from typing import Callable

from indimail.queue.layout import QueueDir
from indimail.queue.reap import pid_alive, reap_dead_writers
from indimail.queue.todo import list_ids

OSSIFIED = 129600  # 36 hours


def _age_stamp(path) -> float | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return max(st.st_atime, st.st_mtime)


def _exists(path) -> bool:
    return os.path.lexists(path)


def _remove(path, removed: list[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    removed.append(str(path))


def cleanup_queue(queue: QueueDir, now: float, *, dead_writers: bool = False,
                  alive: Callable[[int], bool] = pid_alive) -> list[str]:
    """Remove stale files; returns the paths removed.

    With *dead_writers* (at start), a ``pid/`` file whose process is gone is
    stale whatever its age, and so is its message when it never reached
    ``todo`` (the writer died before the message was queued).
    """
    removed: list[str] = []
    if dead_writers:
        removed += [str(p) for p in reap_dead_writers(queue, alive)]
    try:
        pid_names = os.listdir(queue.pid_dir)
    except FileNotFoundError:
        pid_names = []
    for name in pid_names:
        path = queue.pid_dir / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if now > max(st.st_atime, st.st_mtime) + OSSIFIED:
            _remove(path, removed)
    for msgid in list_ids(queue, "intd"):
        stamp = _age_stamp(queue.intd(msgid))
        if stamp is not None and now > stamp + OSSIFIED and not _exists(queue.todo(msgid)):
            _remove(queue.intd(msgid), removed)
    for msgid in list_ids(queue, "mess"):
        stamp = _age_stamp(queue.mess(msgid))
        if stamp is None or now <= stamp + OSSIFIED:
            continue
        if any(_exists(p) for p in (queue.todo(msgid), queue.intd(msgid), queue.info(msgid),
                                    queue.local(msgid), queue.remote(msgid),
                                    queue.bounce(msgid))):
            continue
        _remove(queue.mess(msgid), removed)
    return removed
