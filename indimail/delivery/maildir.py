"""Maildir delivery (``maildir_deliver.c``): write ``tmp/``, fsync, link
into ``new/``, unlink the tmp name.  Blocking: run it in a worker thread.

Names follow indimail-mta's revised Maildir protocol, plus a per-process
counter ``Q<n>`` because one process delivers many messages at once:
``tmp/<sec>.M<usec>P<pid>Q<n>.<host>`` and
``new/<sec>.I<ino hex>V<dev hex>M<usec>P<pid>Q<n>.<host>,S=<size>``.
A missing Maildir is created (``docs/decisions.md``).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from indimail.diskio import write_all
from indimail.delivery.result import permanent, temporary

OVERQUOTA = "Recipient's mailbox is full, message returned to sender. (#5.2.2)"
CHUNK = 65536


def safe_hostname(name: str) -> str:
    """The host part of a Maildir name: ``/`` → ``057``, ``:`` → ``072``."""
    return name.replace("/", "057").replace(":", "072")


def ensure_maildir(path: os.PathLike | str) -> None:
    """Create ``tmp``, ``new`` and ``cur`` (and missing parents), mode 0700."""
    path = Path(path)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(path / sub, mode=0o700, exist_ok=True)


class MaildirWriter:
    """Delivers copies into Maildirs with unique names."""

    def __init__(self, hostname: str | None = None, pid: int | None = None,
                 fsync: bool = True, clock: Callable[[], float] = time.time):
        self.hostname = safe_hostname(hostname or socket.gethostname())
        self.pid = os.getpid() if pid is None else pid
        self.fsync = fsync
        self.clock = clock
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            return next(self._counter)

    def tmp_name(self, sec: int, usec: int, n: int) -> str:
        return f"{sec}.M{usec}P{self.pid}Q{n}.{self.hostname}"

    def new_name(self, sec: int, usec: int, n: int, st: os.stat_result) -> str:
        return (f"{sec}.I{st.st_ino:x}V{st.st_dev:x}M{usec}P{self.pid}Q{n}."
                f"{self.hostname},S={st.st_size}")

    def deliver(self, maildir: os.PathLike | str, prefix: bytes,
                message: os.PathLike | str, create: bool = True) -> Path:
        """Write *prefix* then the file *message* into *maildir*; the path in
        ``new/``.  Raises DeliveryError with qmail-local's texts.  The names
        are built as strings: ``Path`` arithmetic cost as much as the rest of
        the Python work of a delivery."""
        maildir = os.fspath(maildir)
        if not create and not os.path.isdir(f"{maildir}/tmp"):
            raise temporary("Unable to chdir to maildir. (#4.2.1)")
        fd, tmp, sec, usec, n = self._create_tmp(maildir, create)
        try:
            try:
                self._copy(fd, prefix, message)
                if self.fsync:
                    os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            new = f"{maildir}/new/{self.new_name(sec, usec, n, st)}"
            try:
                os.link(tmp, new)
            except FileNotFoundError:
                self._make(maildir, create)
                os.link(tmp, new)
        except _ReadError:
            raise temporary("Unable to read message. (#4.3.0)") from None
        except OSError as exc:
            if exc.errno == errno.EDQUOT:
                raise permanent(OVERQUOTA) from None
            raise temporary("Temporary error on maildir delivery. (#4.3.0)") from None
        finally:
            _unlink(tmp)
        return Path(new)

    @staticmethod
    def _make(maildir: str, create: bool) -> None:
        """Create the Maildir's directories (when allowed), in qmail-local's
        words when that is impossible."""
        try:
            if not create:
                raise FileNotFoundError(maildir)
            ensure_maildir(maildir)
        except OSError:
            raise temporary("Unable to chdir to maildir. (#4.2.1)") from None

    def _create_tmp(self, maildir: str, create: bool):
        """A new file in ``tmp/``; a missing Maildir is made first (only
        then: an existing one costs no mkdir calls per delivery)."""
        made = False
        for _attempt in range(3):
            now = self.clock()
            sec, usec = int(now), int((now - int(now)) * 1_000_000)
            n = self._next()
            tmp = f"{maildir}/tmp/{self.tmp_name(sec, usec, n)}"
            try:
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except (FileNotFoundError, NotADirectoryError):
                    if made:
                        raise
                    self._make(maildir, create)
                    made = True
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno == errno.EDQUOT:
                    raise permanent(OVERQUOTA) from None
                raise temporary("Temporary error on maildir delivery. (#4.3.0)") from None
            return fd, tmp, sec, usec, n
        raise temporary("Temporary error on maildir delivery. (#4.3.0)")

    @staticmethod
    def _copy(fd: int, prefix: bytes, message) -> None:
        write_all(fd, prefix)
        if isinstance(message, int):
            src = os.dup(message)
            seek = True
        else:
            try:
                src = os.open(message, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                raise _ReadError() from None
            seek = False
        try:
            while True:
                try:
                    if seek:
                        os.lseek(src, 0, os.SEEK_SET)
                        seek = False
                    chunk = os.read(src, CHUNK)
                except OSError:
                    raise _ReadError() from None
                if not chunk:
                    return
                write_all(fd, chunk)
        finally:
            os.close(src)


def open_source(message):
    """The message for reading from its start: *message* is a path, or an
    open descriptor (a privileged child's stdin), which stays open."""
    if isinstance(message, int):
        src = open(os.dup(message), "rb")
        src.seek(0)
        return src
    return open(message, "rb")


class _ReadError(Exception):
    """The message file could not be read."""


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
