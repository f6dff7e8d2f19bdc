"""Small blocking file helpers shared by the queue and the delivery agents."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of *data* to *fd* (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_file(path, data: bytes, *, flags: int, mode: int = 0o600,
               fsync: bool = True) -> float:
    """Open *path* with *flags* (``os.O_WRONLY`` is added), write all of
    *data*, fsync when asked, close: the one way queue files are written.
    Returns the file's mtime after the write (one ``fstat``, no extra
    path lookup)."""
    fd = os.open(path, os.O_WRONLY | flags, mode)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)


def read_if_exists(path) -> bytes | None:
    """The bytes of the file at *path*; None when there is none.  For the
    control files read once per message: a string path and ``open`` cost a
    fraction of building a ``Path`` and calling its ``read_bytes``."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def read_to_end(fd: int, size_hint: int = 0, chunk: int = 65536) -> bytes:
    """Every byte from *fd*'s position to its end: a file of *size_hint*
    bytes in one ``read`` (one more confirms the end)."""
    parts = []
    size = max(size_hint + 1, chunk)
    while True:
        data = os.read(fd, size)
        if not data:
            return b"".join(parts)
        parts.append(data)
        size = chunk
