"""Session counts for tcpserver's ``MAXDAEMONS`` and ``MAXPERIP``.

tcpserver counted the children of one listener; the SMTP service counts
the sessions of one listener (a *scope*).  Two implementations share one
interface, ``acquire(ip, perip, daemons) -> Admission``:

* :class:`LocalLimits` -- in-memory counts of one process (the
  single-process service: ``--smtp-workers 0``, ``twistd indimail-smtpd``);
* :class:`SharedTable` / :class:`SharedLimits` -- counts shared by the SMTP
  worker processes of ``twistd indimail``, so that a limit holds for the
  whole service however the kernel spreads connections over the workers.

The shared table is a small file mapped by every process (an anonymous
``memfd`` the main process creates and the workers inherit as an fd).  Each
worker owns one *region*: per scope its open-session total, and a fixed-size
open-addressing hash table (linear probing, backward-shift deletion) of
per-IP session counts.  Only the owner writes its region; an admission reads
every region.  A worker that (re)starts zeroes its region first, and the main
process zeroes the region of a worker that died, so a killed worker leaks no
slots.

Check-and-count is one critical section under an ``fcntl`` (POSIX record)
lock on the table's fd.  It runs on the reactor thread: the section is a
few hash probes in mapped memory (tens of microseconds, no I/O, no
allocation that can block), the kernel drops the lock of a process that dies
holding it, and a POSIX lock is per process, so workers that inherited the
same open file still exclude each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

MAGIC = b"IMSMTPL1"
HEADER = struct.Struct("<8sIII")      # magic, workers, slots, scopes
HEADER_SIZE = 64
KEY_SIZE = 16
SLOT = struct.Struct("<16sI")         # key (a digest of scope and IP), count
COUNT = struct.Struct("<I")
DEFAULT_SLOTS = 16384                 # per worker; at most 3/4 of them used
MAX_SCOPES = 8                        # listeners (smtp, submission, smtps, ...)


@dataclass(frozen=True)
class Admission:
    """The answer of ``acquire``: *release* ends the session's count; when it
    is None the session was refused by *limit* (``MAXDAEMONS``/``MAXPERIP``)
    at *count* open sessions (*full*: the shared table had no free slot)."""

    release: Callable[[], None] | None
    limit: str = ""
    count: int = 0
    full: bool = False


def _refuse(limit: str, count: int, full: bool = False) -> Admission:
    return Admission(None, limit, count, full)


class LocalLimits:
    """Counts of one process (tcpserver's own bookkeeping)."""

    def __init__(self) -> None:
        self.active = 0                      # open sessions (MAXDAEMONS)
        self.per_ip: dict[str, int] = {}     # open sessions per remote IP (MAXPERIP)

    def acquire(self, ip: str, perip: int, daemons: int) -> Admission:
        if daemons > 0 and self.active >= daemons:
            return _refuse("MAXDAEMONS", self.active)
        count = self.per_ip.get(ip, 0)
        if perip > 0 and count >= perip:
            return _refuse("MAXPERIP", count)
        self.active += 1
        self.per_ip[ip] = count + 1
        return Admission(lambda: self._release(ip))

    def _release(self, ip: str) -> None:
        self.active = max(0, self.active - 1)
        left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)


def _key(scope: int, ip: str) -> bytes:
    """16 bytes naming (scope, ip); never all zero (zero marks a free slot)."""
    digest = hashlib.blake2b(f"{scope}\0{ip}".encode("utf-8", "surrogateescape"),
                             digest_size=KEY_SIZE).digest()
    return digest if any(digest) else b"\1" + digest[1:]


def _region_size(slots: int, scopes: int) -> int:
    """Bytes of one worker's region: totals, used count, the accepting
    flag, slots (64-aligned)."""
    return (4 * scopes + 8 + slots * SLOT.size + 63) // 64 * 64


class SharedTable:
    """The shared counts of *workers* worker processes (numbered from 1)."""

    def __init__(self, fd: int, *, owner: bool = False):
        self.fd = fd
        os.set_inheritable(fd, False)   # not for the programs a worker runs
        self._owner = owner
        header = os.pread(fd, HEADER.size, 0)
        magic, self.workers, self.slots, self.scopes = HEADER.unpack(header)
        if magic != MAGIC:
            raise ValueError("not an smtpd limits table")
        self.capacity = self.slots * 3 // 4
        # region: per scope the session total, the used-slot count, the slots
        self._totals_size = 4 * self.scopes
        self._totals = struct.Struct(f"<{self.scopes}I")   # every scope's total at once
        self._used_offset = self._totals_size
        self._accepting_offset = self._totals_size + 4
        self._slots_offset = self._totals_size + 8
        self.region_size = _region_size(self.slots, self.scopes)
        self.size = HEADER_SIZE + self.workers * self.region_size
        self.map = mmap.mmap(fd, self.size)

    @classmethod
    def create(cls, workers: int, *, slots: int = DEFAULT_SLOTS,
               scopes: int = MAX_SCOPES) -> "SharedTable":
        """A new zeroed table in an anonymous file (``memfd`` on Linux)."""
        if workers < 1 or slots < 1 or scopes < 1:
            raise ValueError("a limits table needs a worker, a slot and a scope")
        try:
            fd = os.memfd_create("indimail-smtpd-limits", os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            fd = os.dup(tempfile.TemporaryFile().fileno())
        os.ftruncate(fd, HEADER_SIZE + workers * _region_size(slots, scopes))
        os.pwrite(fd, HEADER.pack(MAGIC, workers, slots, scopes), 0)
        return cls(fd, owner=True)

    def close(self) -> None:
        self.map.close()
        if self._owner:
            os.close(self.fd)

    # -- locking --------------------------------------------------------------
    @contextmanager
    def locked(self):
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    # -- regions --------------------------------------------------------------
    def _region(self, worker: int) -> int:
        if not 1 <= worker <= self.workers:
            raise ValueError(f"worker {worker} not in 1..{self.workers}")
        return HEADER_SIZE + (worker - 1) * self.region_size

    def reset(self, worker: int) -> None:
        """Forget every session of *worker* (it is starting, or it died)."""
        base = self._region(worker)
        with self.locked():
            self.map[base:base + self.region_size] = bytes(self.region_size)

    def view(self, worker: int, scope: int) -> "SharedLimits":
        """The counter of *worker*'s listener *scope* (0-based)."""
        self._region(worker)
        if not 0 <= scope < self.scopes:
            raise ValueError(f"scope {scope} not in 0..{self.scopes - 1}")
        return SharedLimits(self, worker, scope)

    # -- reading (under the lock) ----------------------------------------------
    def total(self, scope: int) -> int:
        """Open sessions of *scope* over all workers."""
        return sum(COUNT.unpack_from(self.map, self._region(w) + 4 * scope)[0]
                   for w in range(1, self.workers + 1))

    def count(self, scope: int, ip: str) -> int:
        """Open sessions from *ip* on *scope* over all workers."""
        key = _key(scope, ip)
        total = 0
        for w in range(1, self.workers + 1):
            index = self._find(self._region(w), key)
            if index is not None:
                total += SLOT.unpack_from(self.map, self._slot(self._region(w), index))[1]
        return total

    def mark_accepting(self, worker: int) -> None:
        """*worker* is up and accepting (a reset, e.g. at its death, clears it)."""
        COUNT.pack_into(self.map, self._region(worker) + self._accepting_offset, 1)

    def accepting(self, worker: int) -> bool:
        return COUNT.unpack_from(self.map, self._region(worker) + self._accepting_offset)[0] == 1

    def sessions_of(self, worker: int) -> int:
        """Open sessions of *worker* over all its listeners, read without the
        lock (a hint for balancing, not a limit)."""
        return sum(self._totals.unpack_from(self.map, self._region(worker)))

    def has_less_busy_peer(self, worker: int) -> bool:
        """Whether another accepting worker has fewer open sessions than *worker*."""
        mine = self.sessions_of(worker)
        return any(self.sessions_of(w) < mine for w in range(1, self.workers + 1)
                   if w != worker and self.accepting(w))

    # -- one region's hash table -------------------------------------------------
    def _slot(self, base: int, index: int) -> int:
        return base + self._slots_offset + index * SLOT.size

    def _home(self, key: bytes) -> int:
        return int.from_bytes(key[:8], "little") % self.slots

    def _find(self, base: int, key: bytes) -> int | None:
        index = self._home(key)
        for _ in range(self.slots):
            found, count = SLOT.unpack_from(self.map, self._slot(base, index))
            if count == 0:
                return None
            if found == key:
                return index
            index = (index + 1) % self.slots
        return None

    def _used(self, base: int) -> int:
        return COUNT.unpack_from(self.map, base + self._used_offset)[0]

    def _add(self, base: int, scope: int, key: bytes) -> bool:
        """One more session of *key* in the region at *base*; False when full."""
        index = self._home(key)
        for _ in range(self.slots):
            offset = self._slot(base, index)
            found, count = SLOT.unpack_from(self.map, offset)
            if count and found == key:
                SLOT.pack_into(self.map, offset, key, count + 1)
                break
            if count == 0:
                used = self._used(base)
                if used >= self.capacity:
                    return False
                SLOT.pack_into(self.map, offset, key, 1)
                COUNT.pack_into(self.map, base + self._used_offset, used + 1)
                break
            index = (index + 1) % self.slots
        else:
            return False
        self._bump_total(base, scope, +1)
        return True

    def _bump_total(self, base: int, scope: int, step: int) -> None:
        offset = base + 4 * scope
        value = COUNT.unpack_from(self.map, offset)[0] + step
        COUNT.pack_into(self.map, offset, max(0, value))

    def _remove(self, base: int, scope: int, key: bytes, counted: bool) -> None:
        """One session of *key* fewer (when it was *counted* per IP)."""
        self._bump_total(base, scope, -1)
        if not counted:
            return
        index = self._find(base, key)
        if index is None:   # the region was reset meanwhile
            return
        offset = self._slot(base, index)
        count = SLOT.unpack_from(self.map, offset)[1]
        if count > 1:
            SLOT.pack_into(self.map, offset, key, count - 1)
            return
        self._delete(base, index)
        COUNT.pack_into(self.map, base + self._used_offset, max(0, self._used(base) - 1))

    def _delete(self, base: int, hole: int) -> None:
        """Free slot *hole*, shifting later entries of its probe run back
        (no tombstones, so lookups stay short however long the service runs)."""
        index = hole
        while True:
            index = (index + 1) % self.slots
            key, count = SLOT.unpack_from(self.map, self._slot(base, index))
            if count == 0:
                break
            home = self._home(key)
            # the entry may stay when its home lies cyclically in (hole, index]
            if (hole < index and hole < home <= index) or \
               (hole > index and (home > hole or home <= index)):
                continue
            SLOT.pack_into(self.map, self._slot(base, hole), key, count)
            hole = index
        SLOT.pack_into(self.map, self._slot(base, hole), bytes(KEY_SIZE), 0)


class SharedLimits:
    """:class:`LocalLimits`'s interface over one worker's part of a
    :class:`SharedTable`: limits are checked against every worker's counts."""

    def __init__(self, table: SharedTable, worker: int, scope: int):
        self.table = table
        self.worker = worker
        self.scope = scope
        self._base = table._region(worker)

    def acquire(self, ip: str, perip: int, daemons: int) -> Admission:
        table, scope = self.table, self.scope
        key = _key(scope, ip)
        with table.locked():
            if daemons > 0:
                active = table.total(scope)
                if active >= daemons:
                    return _refuse("MAXDAEMONS", active)
            count = table.count(scope, ip)
            if perip > 0 and count >= perip:
                return _refuse("MAXPERIP", count)
            counted = table._add(self._base, scope, key)
            if not counted:
                if perip > 0:   # a limit we cannot keep: refuse rather than exceed it
                    return _refuse("MAXPERIP", count, full=True)
                table._bump_total(self._base, scope, +1)
        return Admission(lambda: self._release(key, counted))

    def _release(self, key: bytes, counted: bool) -> None:
        with self.table.locked():
            self.table._remove(self._base, self.scope, key, counted)

    @property
    def active(self) -> int:
        """Open sessions of this listener over all workers."""
        with self.table.locked():
            return self.table.total(self.scope)

    def sessions_from(self, ip: str) -> int:
        """Open sessions from *ip* on this listener over all workers."""
        with self.table.locked():
            return self.table.count(self.scope, ip)
