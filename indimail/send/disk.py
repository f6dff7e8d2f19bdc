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
        with open(queue.file(channel, msgid), "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    try:
        with open(queue.file("info", msgid), "rb") as handle:
            birth = os.fstat(handle.fileno()).st_mtime
            info = Info.parse(handle.read())
    except FileNotFoundError:
        return None
    return PassWork(info, birth, parse_recipients(data))


def mark_done(path, offset: int, *, fsync: bool = False) -> None:
    """Blocking: overwrite a record's ``T`` with ``D`` in place.

    Not fsynced by default, as qmail-send's markdone(): the delivery itself
    is durable (the Maildir copy is fsynced, a remote host said 250), and a
    ``D`` lost in a crash means one more delivery, never a lost message."""
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
    unlink(queue.file("intd", msgid))
    unlink(queue.file("mess", msgid))
    unlink(queue.file("info", msgid))


def done_state(queue: QueueDir, msgid: int, *,
               channels_gone: bool = False) -> tuple[Info, float] | None:
    """Blocking: (info, birth) when the message has no todo/local/remote
    left but still an info file — i.e. it is ready to be finished.
    *channels_gone*: the caller has just seen that local and remote are gone."""
    left = ("todo",) if channels_gone else ("local", "remote", "todo")
    for kind in left:
        if os.path.lexists(queue.file(kind, msgid)):
            return None
    try:
        with open(queue.file("info", msgid), "rb") as handle:
            birth = os.fstat(handle.fileno()).st_mtime
            return Info.parse(handle.read()), birth
    except FileNotFoundError:
        return None


def startup_state(queue: QueueDir, msgid: int) -> dict | None:
    """Blocking (pqadd): per channel the due time (file mtime), or None when
    the message still has a todo file (todo processing redoes it)."""
    if os.path.lexists(queue.file("todo", msgid)):
        return None
    due = {}
    for channel in CHANNELS:
        try:
            due[channel] = os.stat(queue.file(channel, msgid)).st_mtime
        except FileNotFoundError:
            pass
    return due


@dataclass
class FinishState:
    """A message ready to be finished: its info, birth and whether a
    ``bounce/`` file waits to be sent."""

    info: Info
    birth: float
    bounce: bool
    removed: bool = False   # no bounce: the message's files are gone already


def finish_state(queue: QueueDir, msgid: int, *,
                 channels_gone: bool = False) -> FinishState | None:
    """Blocking: :func:`done_state` plus whether ``bounce/id`` exists."""
    state = done_state(queue, msgid, channels_gone=channels_gone)
    if state is None:
        return None
    return FinishState(state[0], state[1], os.path.lexists(queue.file("bounce", msgid)))


def close_channel(queue: QueueDir, msgid: int, channel: str, marks=(),
                  mark=None, remove: bool = False) -> tuple[bool, FinishState | None]:
    """Blocking: remove a finished channel file; (no channel left, the
    message's :class:`FinishState` then), so one trip to a thread closes and
    inspects.  *marks* are the offsets of records delivered but not yet
    marked ``D``: removing the file records them with the rest; only when
    the removal fails are their ``D`` written (*mark*, default
    :func:`mark_done`), so a retry does not deliver them again.  With
    *remove*, a message that is done and has no bounce to send is removed
    too (:func:`remove_message`; ``removed`` set in the state)."""
    path = queue.file(channel, msgid)
    try:
        # every record is done: the unlink says so for all of them at once,
        # so the pending D marks are written only when it fails
        unlink(path)
    except OSError:
        for offset in marks:
            (mark or mark_done)(path, offset)
        raise
    if any(os.path.lexists(queue.file(c, msgid)) for c in CHANNELS):
        return False, None
    state = finish_state(queue, msgid, channels_gone=True)
    if remove and state is not None and not state.bounce:
        remove_message(queue, msgid)
        state.removed = True
    return True, state


def set_due(path, when: float) -> None:
    """Blocking: remember the next retry in the file's mtime (pqfinish)."""
    try:
        os.utime(path, (when, when))
    except FileNotFoundError:
        pass
