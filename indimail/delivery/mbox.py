"""mbox delivery (qmail-local's ``mailfile``): append under an exclusive
fcntl lock, ``From `` line first, ``>From`` quoting, a blank line last; on a
write error the file is truncated back.  Blocking: run it in a thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Callable

from indimail.delivery.lines import gfrom
from indimail.delivery.maildir import OVERQUOTA, open_source
from indimail.delivery.result import DeliveryError, permanent, temporary

LOCK_WAIT = 30.0
_POLL = 0.1


def lock_exclusive(fd: int, wait: float = LOCK_WAIT,
                   clock: Callable[[], float] = time.monotonic,
                   pause: Callable[[float], None] = time.sleep) -> bool:
    """Take an exclusive fcntl lock, trying for *wait* seconds.

    True when locked; False when locking is not supported (qmail-local then
    goes on unlocked); raises the 30-second error when someone holds it."""
    deadline = clock() + wait
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                return False
        if clock() >= deadline:
            raise temporary("File has been locked for 30 seconds straight. (#4.3.0)")
        pause(_POLL)


def deliver_mbox(path: os.PathLike | str, ufline: bytes, prefix: bytes,
                 message: os.PathLike | str, fsync: bool = True,
                 lock_wait: float = LOCK_WAIT) -> None:
    """Append the message at *message* to the mbox *path*."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise temporary(f"Unable to open {path}: {os.strerror(exc.errno)}. (#4.2.1)") from None
    try:
        locked = lock_exclusive(fd, lock_wait)
        pos = os.lseek(fd, 0, os.SEEK_END)
        try:
            _append(fd, ufline + prefix, message)
            if fsync:
                os.fsync(fd)
        except DeliveryError:
            _truncate(fd, pos, locked)
            raise
        except OSError as exc:
            _truncate(fd, pos, locked)
            if exc.errno == errno.EDQUOT:
                raise permanent(OVERQUOTA) from None
            raise temporary(f"Unable to write {path}: {os.strerror(exc.errno)}. (#4.3.0)") from None
    finally:
        os.close(fd)


def _append(fd: int, head: bytes, message) -> None:
    out = [head]
    size = len(head)
    try:
        src = open_source(message)
    except OSError as exc:
        raise temporary(f"Unable to read message: {os.strerror(exc.errno)}. (#4.3.0)") from None
    with src:
        last = b"\n"
        for line in src:
            if gfrom(line):
                out.append(b">")
            out.append(line)
            size += len(line)
            last = line
            if size >= 65536:
                _flush(fd, out)
                size = 0
        if not last.endswith(b"\n"):
            out.append(b"\n")
    out.append(b"\n")
    _flush(fd, out)


def _flush(fd: int, parts: list[bytes]) -> None:
    data = memoryview(b"".join(parts))
    parts.clear()
    while data:
        data = data[os.write(fd, data):]


def _truncate(fd: int, pos: int, locked: bool) -> None:
    if locked:
        try:
            os.ftruncate(fd, pos)
        except OSError:
            pass
