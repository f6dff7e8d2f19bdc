"""``lock/tcpto``: qmail-remote's table of hosts that recently timed out.

The file is upstream's binary format, so ``qmail-tcpto`` of C IndiMail
reads ours and the other way round: 2048 bytes, 64 records of 32 bytes:

====== ======================================================
offset field
====== ======================================================
0      address family (``AF_INET`` or ``AF_INET6`` of the host)
4      number of recent errors (0 = free slot, at most 10)
8      time of the last error, 32-bit little-endian seconds
16     the address: 4 bytes (IPv4) or 16 bytes (IPv6)
====== ======================================================

An address with two or more recent errors is skipped for ``min_backoff``
seconds plus a random 240..2224 s (upstream's ``getpid()`` jitter); a new
error within ``max_tolerance`` seconds of the last one is not counted; a
successful connection clears the count.  Every access holds an exclusive
``flock`` on the file, as upstream's ``lock_ex`` does; callers run these
methods in a thread (they read and write a file).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

SIZE = 2048
RECORD = 32
MAX_ERRORS = 10
MIN_PENALTY = 3600      # qmail-remote's MIN_PENALTY (seconds skipped)
MAX_TOLERANCE = 120     # qmail-remote's MAX_TOLERANCE (errors closer count once)


@dataclass(frozen=True)
class Entry:
    """One remembered address: for ``qmail-tcpto``."""

    address: str
    family: int
    errors: int
    when: int


def _key(address: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return socket.AF_INET, ip.packed
    return socket.AF_INET6, ip.packed


def _when(record: bytes | bytearray) -> int:
    return struct.unpack_from("<I", record, 8)[0]


def _matches(record: bytes | bytearray, family: int, packed: bytes) -> bool:
    return record[0] == family and bytes(record[16:16 + len(packed)]) == packed


def jitter(rng: random.Random | None = None) -> int:
    """Upstream's ``((60 + (getpid() & 31)) << 6) - 3600``: 240..2224 s."""
    low5 = rng.randrange(32) if rng is not None else os.getpid() & 31
    return ((60 + low5) << 6) - 3600


class TcpTimeouts:
    """The ``lock/tcpto`` file of one queue."""

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)

    def _open(self, create: bool = False) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        if create and os.fstat(fd).st_size < SIZE:
            os.pwrite(fd, bytes(SIZE - os.fstat(fd).st_size), os.fstat(fd).st_size)
        return fd

    def _read(self, fd: int) -> bytearray:
        os.lseek(fd, 0, os.SEEK_SET)
        data = bytearray(os.read(fd, SIZE))
        return data[:len(data) - len(data) % RECORD]

    def _write(self, fd: int, index: int, record: bytes | bytearray) -> None:
        os.pwrite(fd, bytes(record), index * RECORD)

    def is_down(self, address: str, min_backoff: int, now: int,
                rng: random.Random | None = None) -> bool:
        """Upstream ``tcpto()``: True when *address* failed at least twice
        and the last failure is recent.  A negative *min_backoff* means
        exactly that many seconds, without the random extra."""
        return self.check(address, min_backoff, now, rng)[0]

    def check(self, address: str, min_backoff: int, now: int,
              rng: random.Random | None = None) -> tuple[bool, bool]:
        """(down, listed): :meth:`is_down` and whether the address has a
        record at all (upstream's ``flagwasthere``: only then does a
        success need writing)."""
        family, packed = _key(address)
        fd = self._open()
        if fd is None:
            return False, False
        try:
            data = self._read(fd)
        finally:
            os.close(fd)
        for start in range(0, len(data), RECORD):
            record = data[start:start + RECORD]
            if not _matches(record, family, packed):
                continue
            if record[4] < 2:
                return False, True
            extra = jitter(rng) if min_backoff > 0 else 0
            return now - _when(record) < abs(min_backoff) + extra, True
        return False, False

    def record(self, address: str, failed: bool, max_tolerance: int, now: int) -> None:
        """Upstream ``tcpto_err()``: count a failure of *address* (or clear
        its count after a success).  A full table reuses the slot whose
        ``when + errors*1024`` is oldest."""
        family, packed = _key(address)
        fd = self._open(create=failed)   # a missing table is made on the first error
        if fd is None:
            return
        try:
            data = self._read(fd)
            count = len(data) // RECORD
            for i in range(count):
                record = data[i * RECORD:(i + 1) * RECORD]
                if not _matches(record, family, packed):
                    continue
                if not failed:
                    record[4] = 0
                else:
                    if record[4] and now < max_tolerance + _when(record):
                        return
                    record[4] = min(record[4] + 1, MAX_ERRORS)
                    struct.pack_into("<I", record, 8, now & 0xFFFFFFFF)
                self._write(fd, i, record)
                return
            if not failed or not count:
                return
            free = [i for i in range(count) if not data[i * RECORD + 4]]
            if free:
                index = free[0]
            else:
                index = min(range(count), key=lambda i: _when(data[i * RECORD:(i + 1) * RECORD])
                            + (data[i * RECORD + 4] << 10))
            record = bytearray(RECORD)
            record[0] = family
            record[16:16 + len(packed)] = packed
            struct.pack_into("<I", record, 8, now & 0xFFFFFFFF)
            record[4] = 1
            self._write(fd, index, record)
        finally:
            os.close(fd)

    def entries(self) -> list[Entry]:
        """The addresses with at least one recent error."""
        fd = self._open()
        if fd is None:
            return []
        try:
            data = self._read(fd)
        finally:
            os.close(fd)
        out = []
        for start in range(0, len(data), RECORD):
            record = data[start:start + RECORD]
            if record[4] < 1:
                continue
            if record[0] == socket.AF_INET:
                address = str(ipaddress.IPv4Address(bytes(record[16:20])))
            elif record[0] == socket.AF_INET6:
                address = str(ipaddress.IPv6Address(bytes(record[16:32])))
            else:
                continue
            out.append(Entry(address, record[0], record[4], _when(record)))
        return out

    def clear(self) -> None:
        """``qmail-tcpok``: overwrite the table with 2048 NUL bytes,
        creating the file when missing."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.pwrite(fd, bytes(SIZE), 0)
        finally:
            os.close(fd)


def format_entry(entry: Entry, now: int) -> str:
    """A line of ``qmail-tcpto``, in upstream's words."""
    kind = "ipv4" if entry.family == socket.AF_INET else "ipv6"
    age = max(now - entry.when, 0)
    return (f"{entry.address} {kind} timed out {age} seconds ago; "
            f"# recent timeouts: {entry.errors}")
