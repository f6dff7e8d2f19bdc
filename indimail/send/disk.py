"""The engine's blocking file work, run in worker threads.

Each function does one step of qmail-send's bookkeeping on the queue
files: read a pass's records, write a result (bounce record, ``D`` in
place), remove finished files.  Nothing here touches the reactor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from indimail.diskio import write_file
from indimail.queue.envelope import Info, parse_recipients
from indimail.queue.layout import QueueDir
from indimail.queue.schedule import CHANNELS


@dataclass
class PassWork:
    """What a delivery pass over one channel file needs from disk."""

    info: Info
    birth: float
    records: list


def read_pass(queue: QueueDir, msgid: int, channel: str) -> PassWork | None:
    """Blocking: the info file (sender, birth) and the channel's records."""
    try:
        data = queue.sub(channel, msgid).read_bytes()
    except FileNotFoundError:
        return None
    try:
        with open(queue.info(msgid), "rb") as handle:
            birth = os.fstat(handle.fileno()).st_mtime
            info = Info.parse(handle.read())
    except FileNotFoundError:
        return None
    return PassWork(info, birth, parse_recipients(data))


def mark_done(path, offset: int, *, fsync: bool = True) -> None:
    """Blocking: overwrite a record's ``T`` with ``D`` in place."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"D", offset)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def append_bounce(path, record: bytes, *, fsync: bool = True) -> None:
    """Blocking: add one failed recipient's record to ``bounce/id``."""
    write_file(path, record, flags=os.O_APPEND | os.O_CREAT, fsync=fsync)


def unlink(path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_message(queue: QueueDir, msgid: int) -> None:
    """Blocking: what qmail-clean removes for ``foop/`` (intd, mess), then
    info, as qmail-send's messdone does.  info goes last because it is the
    record of the message: after a crash anywhere in here, the start-up scan
    finds the info file and finishes the job; removing it first would leave
    a mess file nothing knows about."""
    unlink(queue.intd(msgid))
    unlink(queue.mess(msgid))
    unlink(queue.info(msgid))


def done_state(queue: QueueDir, msgid: int) -> tuple[Info, float] | None:
    """Blocking: (info, birth) when the message has no todo/local/remote
    left but still an info file — i.e. it is ready to be finished."""
    for path in (queue.local(msgid), queue.remote(msgid), queue.todo(msgid)):
        if os.path.lexists(path):
            return None
    try:
        with open(queue.info(msgid), "rb") as handle:
            birth = os.fstat(handle.fileno()).st_mtime
            return Info.parse(handle.read()), birth
    except FileNotFoundError:
        return None


def startup_state(queue: QueueDir, msgid: int) -> dict | None:
    """Blocking (pqadd): per channel the due time (file mtime), or None when
    the message still has a todo file (todo processing redoes it)."""
    if os.path.lexists(queue.todo(msgid)):
        return None
    due = {}
    for channel in CHANNELS:
        try:
            due[channel] = queue.sub(channel, msgid).stat().st_mtime
        except FileNotFoundError:
            pass
    return due


def close_channel(queue: QueueDir, msgid: int, channel: str) -> bool:
    """Blocking: remove a finished channel file; True when no channel is left."""
    unlink(queue.sub(channel, msgid))
    return not any(os.path.lexists(queue.sub(c, msgid)) for c in CHANNELS)


def set_due(path, when: float) -> None:
    """Blocking: remember the next retry in the file's mtime (pqfinish)."""
    try:
        os.utime(path, (when, when))
    except FileNotFoundError:
        pass
