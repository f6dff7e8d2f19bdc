"""Maildir++ quota: the ``maildirsize`` file of a Maildir (reference §10).

Line 1 is the quota (``<bytes>S,<count>C`` or ``<bytes>S``), line 2 the last
recount (``<bytes> <count>``), and every delivery appends ``<size> 1``; the
usage is the sum of the lines after the first.  The file is read and extended
under an fcntl write lock and rebuilt from the Maildir when its quota line
differs from the user's, when it is older than :data:`RECALC_AGE` seconds or
larger than :data:`RECALC_SIZE` bytes.  Everything here blocks: run it in a
thread.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .quota import Quota

FILENAME = "maildirsize"
RECALC_AGE = 43200
RECALC_SIZE = 8192
_SIZE_IN_NAME = re.compile(r",S=(\d+)")


@dataclass(frozen=True)
class Usage:
    """Bytes and messages in a Maildir."""

    size: int = 0
    count: int = 0

    def plus(self, size: int, count: int = 1) -> "Usage":
        return Usage(self.size + size, self.count + count)


def quota_line(quota: Quota) -> bytes:
    """The first line for *quota*: ``<bytes>S,<count>C`` (``<bytes>S`` without a count)."""
    text = f"{quota.size}S"
    if quota.count:
        text += f",{quota.count}C"
    return (text + "\n").encode()


def parse_quota_line(line: bytes) -> Quota:
    """The Quota of a first line; fields other than ``S`` and ``C`` are ignored."""
    size = count = 0
    for field in line.decode("ascii", "replace").strip().split(","):
        match = re.match(r"\s*(\d+)([SC])\s*$", field)
        if match and match.group(2) == "S":
            size = int(match.group(1))
        elif match:
            count = int(match.group(1))
    return Quota(size, count)


def parse(data: bytes) -> tuple[Quota, Usage]:
    """The quota line and the summed usage of a ``maildirsize`` file's bytes."""
    lines = data.split(b"\n")
    quota = parse_quota_line(lines[0]) if lines else Quota()
    size = count = 0
    for line in lines[1:]:
        fields = line.split()
        if len(fields) >= 2:
            try:
                size += int(fields[0])
                count += int(fields[1])
            except ValueError:
                continue
    return quota, Usage(size, count)


def over_quota(quota: Quota, usage: Usage, msgsize: int) -> bool:
    """Whether one more message of *msgsize* bytes breaks *quota* (0 = no limit)."""
    if quota.size and usage.size + msgsize > quota.size:
        return True
    return bool(quota.count and usage.count + 1 > quota.count)


def _message_size(entry: os.DirEntry) -> int:
    match = _SIZE_IN_NAME.search(entry.name)
    if match:
        return int(match.group(1))
    try:
        return entry.stat().st_size
    except OSError:
        return 0


def count_maildir(maildir: Path) -> Usage:
    """Recount: the messages in new/ and cur/ of the Maildir and of its
    ``.folder`` subfolders (``,S=`` in a name gives the size without a stat).
    Trash is counted too, as Maildir++ allows either."""
    size = count = 0
    folders = [maildir]
    try:
        folders += [Path(e.path) for e in os.scandir(maildir)
                    if e.name.startswith(".") and e.name not in (".", "..") and e.is_dir()]
    except FileNotFoundError:
        return Usage()
    for folder in folders:
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(folder / sub))
            except OSError:
                continue
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    size += _message_size(entry)
                    count += 1
    return Usage(size, count)


class MaildirSize:
    """The ``maildirsize`` file of one Maildir."""

    def __init__(self, maildir: os.PathLike | str):
        self.maildir = Path(maildir)
        self.path = self.maildir / FILENAME

    def _locked(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _read(fd: int) -> bytes:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def _current(self, fd: int, quota: Quota, now: float) -> Usage:
        """The usage, rebuilding the file first when it is stale (lock held)."""
        st = os.fstat(fd)
        data = self._read(fd)
        found, usage = parse(data) if data else (None, None)
        if (found != quota or st.st_size > RECALC_SIZE
                or now - st.st_mtime > RECALC_AGE):
            usage = count_maildir(self.maildir)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, quota_line(quota) + f"{usage.size} {usage.count}\n".encode())
        return usage

    def usage(self, quota: Quota, now: float) -> Usage:
        """The current usage (rebuilding a stale file)."""
        fd = self._locked()
        try:
            return self._current(fd, quota, now)
        finally:
            os.close(fd)

    def reserve(self, quota: Quota, msgsize: int, now: float,
                force_upto: int = 0) -> tuple[bool, Usage]:
        """Add ``<msgsize> 1`` when the message fits, or is no bigger than
        *force_upto* (upstream's OVERQUOTA_MAILSIZE); (fits, usage before)."""
        fd = self._locked()
        try:
            usage = self._current(fd, quota, now)
            if over_quota(quota, usage, msgsize) and msgsize > force_upto:
                return False, usage
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, f"{msgsize} 1\n".encode())
            return True, usage
        finally:
            os.close(fd)

    def release(self, msgsize: int) -> None:
        """Take back a reservation whose delivery failed (``-<size> -1``)."""
        fd = self._locked()
        try:
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, f"-{msgsize} -1\n".encode())
        finally:
            os.close(fd)
