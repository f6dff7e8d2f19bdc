"""Put a message into the queue, crash-safe, the way qmail-queue does.

:class:`QueueWriter` is the blocking writer for commands and worker
threads; it follows the stages of reference §1:

1. create ``pid/<pid>.<time>.<seq>`` (``O_EXCL``); its inode is the id;
2. link it to ``mess/S/id``, write the Received line and the message;
   fsync;
3. write the envelope to ``intd/S/id``; fsync;
4. link ``intd/S/id`` to ``todo/S/id`` (fsync the todo directory with
   ``USE_SYNCDIR``) — from here on the message is queued;
5. pull ``lock/trigger``.

Unlike upstream, the pid file is unlinked only after stage 4 (or on
abort), not right after the link to ``mess``: while a writer works, its
``pid/<pid>.<time>.<seq>`` names the process that owns the half-written
message (same inode), so after a kill -9 :func:`indimail.queue.reap.reap_dead_writers`
can remove exactly the files of dead writers at once instead of waiting
36 hours.  C tools never look inside ``pid/``, so nothing else changes.

Any failure before stage 4 truncates and removes what was made and raises
:class:`~indimail.queue.errors.QueueError` with upstream's exit code.

:class:`Enqueuer` is the reactor side: :meth:`Enqueuer.begin` returns an
:class:`IncomingMessage` whose ``write()`` never blocks; bytes go to the
mess file through one in-order writer on a dedicated thread pool, with a
bounded buffer and producer back-pressure, so memory stays flat.

Fsync rule (``USE_FSYNC``/``USE_SYNCDIR``): upstream fsyncs only when
``USE_FSYNC`` is set to a non-empty value.  We want crash safety by
default, so here fsync is ON when ``USE_FSYNC`` is unset, and OFF only
when it is set to the empty string or ``0``.  ``USE_SYNCDIR`` follows the
same rule: a message is acknowledged only when its todo link is durable
(DESIGN.md), so the todo directory is fsynced unless the administrator
sets ``USE_SYNCDIR`` to the empty string or ``0``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from indimail.diskio import read_if_exists, write_all

from indimail.fastlog import Logger
from . import errors
from .envelope import MAX_ADDRESS, Envelope
from .envheaders import HeaderCollector, load_envheaders
from .errors import QueueError
from .layout import QueueDir, configured_queues, select_queue
from .placement import SpreadCreator, link_unnamed
from .syncpool import SynchronousThreadPool
from .received import received_line
from .trigger import trigger_pull

_seq = itertools.count(1)
FILE_MODE = 0o644   # mess, intd and todo files (reference §1)
_creators: dict[str, SpreadCreator] = {}


def _spread_creator(queue: QueueDir) -> SpreadCreator:
    """This process's round-robin over *queue*'s ``mess`` directories."""
    key = str(queue.path)
    creator = _creators.get(key)
    if creator is None:
        dirs = [f"{key}/mess/{n}" for n in range(queue.split)]
        start = os.getpid() % len(dirs)
        creator = _creators.setdefault(key, SpreadCreator(dirs[start:] + dirs[:start]))
    return creator


# -- environment switches -------------------------------------------------

def fsync_enabled(env: Mapping[str, str]) -> bool:
    """See the module docstring: on unless ``USE_FSYNC`` is ``""``/``0``."""
    if "USE_FSYNC" not in env:
        return True
    return env["USE_FSYNC"].strip() not in ("", "0")


def syncdir_enabled(env: Mapping[str, str]) -> bool:
    """See the module docstring: on unless ``USE_SYNCDIR`` is ``""``/``0``."""
    if "USE_SYNCDIR" not in env:
        return True
    return env["USE_SYNCDIR"].strip() not in ("", "0")


def min_free(env: Mapping[str, str]) -> int:
    """``MIN_FREE`` in bytes (0: no check)."""
    try:
        return max(0, int(env.get("MIN_FREE", "0").strip() or 0))
    except ValueError:
        return 0


def nullqueue(env: Mapping[str, str]) -> bool:
    """``NULLQUEUE`` set: accept every message and throw it away."""
    return "NULLQUEUE" in env


def extra_recipients(env: Mapping[str, str], control_dir: Path | None = None) -> list[str]:
    """``EXTRAQUEUE`` (one address), else the lines of control
    ``extraqueue``; blocking when it reads the control file."""
    value = env.get("EXTRAQUEUE")
    if value is not None:
        return [value] if value else []
    if control_dir is None:
        return []
    try:
        data = read_if_exists(os.path.join(control_dir, "extraqueue"))
    except OSError:
        raise QueueError(errors.CONFIG_ERROR) from None
    if data is None:
        return []
    text = data.decode("utf-8", "surrogateescape")
    return [line.strip() for line in text.splitlines() if line.strip()]


def qqeh_record(extra_headers: str | None) -> str | None:
    """The ``e`` record: the text ending in ``\\n`` (upstream adds one)."""
    if not extra_headers:
        return None
    return extra_headers if extra_headers.endswith("\n") else extra_headers + "\n"


def check_address(address: str) -> None:
    """Upstream reads at most 1003 bytes including the NUL: a longer address
    is exit 11 (permanent)."""
    if len(address.encode("utf-8", "surrogateescape")) >= MAX_ADDRESS:
        raise QueueError(errors.TOO_LONG)


# -- the blocking writer ----------------------------------------------------

class QueueWriter:
    """One message going into *queue*; blocking, use it from one thread.

    *uid*/*pid* are the ``u``/``p`` envelope records (default: this
    process); they replace the values of the envelope given to
    :meth:`commit`.  *fsync_func* is injectable for tests.
    """

    def __init__(self, queue: QueueDir, *, fsync: bool = True, syncdir: bool = False,
                 uid: int | None = None, pid: int | None = None, now: float | None = None,
                 min_free: int = 0, fsync_func: Callable[[int], None] = os.fsync,
                 envheaders: list[str] | None = None):
        self.queue = queue
        self._headers = HeaderCollector(envheaders) if envheaders else None
        self.fsync = fsync
        self.syncdir = syncdir
        self.uid = os.getuid() if uid is None else uid
        self.pid = os.getpid() if pid is None else pid
        self.now = now
        self.min_free = min_free
        self._fsync = fsync_func
        self.msgid: int | None = None
        self._messfd: int | None = None
        self._intdfd: int | None = None
        self._made_mess = False
        self._made_intd = False
        self._pidfn: str | None = None
        self.committed = False
        self.size = 0

    def collect_headers(self, names: list[str]) -> None:
        """Collect the header fields *names* for the ``h`` record (call
        before :meth:`open`)."""
        self._headers = HeaderCollector(names) if names else None

    # stage 1 and 2 ------------------------------------------------------
    def open(self, received: bytes) -> int:
        """Create the mess file and write *received*; returns the id."""
        if not os.path.isdir(self.queue.root):
            raise QueueError(errors.MESS_FILE)   # upstream: chdir(queuedir) failed
        if self.min_free:
            self._check_space()
        now = int(time.time() if self.now is None else self.now)
        fd, pidfn = self._pid_open(now)
        try:
            self.msgid = os.fstat(fd).st_ino
        except OSError:
            os.close(fd)
            self._unlink(pidfn)
            raise QueueError(errors.PID_FILE) from None
        messfn = self.queue.file("mess", self.msgid)
        try:
            os.link(pidfn, messfn)
        except OSError:
            os.close(fd)
            self._unlink(pidfn)
            raise QueueError(errors.LINK_MESS) from None
        self._messfd = fd
        self._pidfn = pidfn   # kept until commit/abort: see the module docstring
        self._made_mess = True
        headers, self._headers = self._headers, None   # not the Received line
        self.write(received)
        self._headers = headers
        return self.msgid

    def _pid_open(self, now: int) -> tuple[int, str]:
        """Stage 1: a new inode named ``pid/<pid>.<time>.<seq>``.  The inode
        is made unnamed in one of the queue's ``mess`` directories and then
        linked into ``pid/`` (see :mod:`indimail.queue.placement`); where
        the file system cannot, it is created in ``pid/`` as upstream does."""
        prefix = f"{self.queue.root}/pid/{self.pid}.{now}."
        creator = _spread_creator(self.queue)
        fd = creator.open(FILE_MODE)
        if fd is not None:
            os.fchmod(fd, FILE_MODE)   # upstream's umask(033), whatever ours is
            for _ in range(10):
                pidfn = f"{prefix}{next(_seq)}"
                try:
                    link_unnamed(fd, pidfn)
                    return fd, pidfn
                except FileExistsError:
                    continue
                except OSError:
                    break
            os.close(fd)   # the unnamed inode goes with it
        for _ in range(10):
            pidfn = f"{prefix}{next(_seq)}"
            try:
                fd = os.open(pidfn, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                os.fchmod(fd, FILE_MODE)   # upstream's umask(033), whatever ours is
                return fd, pidfn
            except FileExistsError:
                continue
            except OSError:
                break
        raise QueueError(errors.PID_FILE)

    def _check_space(self) -> None:
        try:
            st = os.statvfs(self.queue.path)
        except OSError:
            raise QueueError(errors.MESS_FILE) from None
        if st.f_bavail * st.f_frsize < self.min_free:
            raise QueueError(errors.WRITE_ERROR,
                             "qq write error or disk full (#4.3.0)")

    def write(self, data: bytes) -> None:
        """Append *data* to the mess file."""
        if self._messfd is None:
            raise QueueError(errors.INTERNAL_BUG)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._messfd, view)
                view = view[n:]
        except OSError:
            self.abort()
            raise QueueError(errors.WRITE_ERROR) from None
        self.size += len(data)
        if self._headers is not None:
            self._headers.feed(data)

    # stage 3, 4 and 5 -----------------------------------------------------
    def commit(self, envelope: Envelope, *, pull_trigger: bool = True) -> int:
        """Write the envelope, link todo, pull the trigger (unless the caller
        pulls it itself, *pull_trigger* False); returns the id."""
        if self._messfd is None or self.msgid is None:
            raise QueueError(errors.INTERNAL_BUG)
        try:
            for address in [envelope.sender, *envelope.recipients]:
                check_address(address)
            env_headers = envelope.env_headers
            if env_headers is None and self._headers is not None:
                env_headers = self._headers.collected
            env = Envelope(envelope.sender, list(envelope.recipients), self.uid, self.pid,
                           envelope.extra_headers, env_headers)
            self._write_intd(env.todo_bytes())
            self._sync()
            self._link_todo()
        except QueueError:
            self.abort()
            raise
        except OSError:
            self.abort()
            raise QueueError(errors.WRITE_ERROR) from None
        self.committed = True
        self._close()
        self._drop_pid_file()
        if pull_trigger:
            trigger_pull(self.queue.trigger)
        return self.msgid

    def _write_intd(self, data: bytes) -> None:
        intdfn = self.queue.file("intd", self.msgid)
        try:
            self._intdfd = os.open(intdfn, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except OSError:
            raise QueueError(errors.INTD_FILE) from None
        self._made_intd = True
        os.fchmod(self._intdfd, FILE_MODE)
        write_all(self._intdfd, data)

    def _sync(self) -> None:
        if self.fsync:
            self._fsync(self._messfd)
            self._fsync(self._intdfd)

    def _link_todo(self) -> None:
        todofn = self.queue.file("todo", self.msgid)
        try:
            os.link(self.queue.file("intd", self.msgid), todofn)
        except OSError:
            raise QueueError(errors.LINK_TODO) from None
        if self.syncdir:
            try:
                fd = os.open(os.path.dirname(todofn), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                try:
                    self._fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                self._unlink(todofn)
                raise QueueError(errors.LINK_TODO) from None

    # cleanup ------------------------------------------------------------
    def abort(self) -> None:
        """Remove whatever this message made (upstream ``cleanup()``); a
        committed message is left alone."""
        if self.committed:
            return
        if self._made_intd and self.msgid is not None:
            self._truncate(self._intdfd)
            self._unlink(self.queue.intd(self.msgid))
            self._made_intd = False
        if self._made_mess and self.msgid is not None:
            self._truncate(self._messfd)
            self._unlink(self.queue.mess(self.msgid))
            self._made_mess = False
        self._close()
        self._drop_pid_file()

    def _drop_pid_file(self) -> None:
        if self._pidfn is not None:
            self._unlink(self._pidfn)
            self._pidfn = None

    def _close(self) -> None:
        for name in ("_messfd", "_intdfd"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)

    @staticmethod
    def _truncate(fd: int | None) -> None:
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass

    @staticmethod
    def _unlink(path: str | os.PathLike) -> None:
        # already gone, or nothing more we can do while cleaning up
        with contextlib.suppress(OSError):
            os.unlink(path)


def writer_for(queue: QueueDir, env: Mapping[str, str], *,
               control_dir: Path | None = None, **kwargs) -> QueueWriter:
    """A :class:`QueueWriter` configured from *env* (fsync, syncdir,
    MIN_FREE) and, with *control_dir*, control ``envheaders``.  Blocking
    when it reads that control file."""
    return QueueWriter(queue, fsync=fsync_enabled(env), syncdir=syncdir_enabled(env),
                       min_free=min_free(env),
                       envheaders=load_envheaders(env, control_dir), **kwargs)


# -- the reactor side ---------------------------------------------------------

class QueueThreadPool(ThreadPool):
    """The Enqueuer's pool: daemon threads, so a process that ends without
    a reactor shutdown (a test run, a crashed service) does not hang on
    them.  Nothing is lost by that: a message is acknowledged only after
    its todo link, which happens inside the work the pool finishes."""

    @staticmethod
    def threadFactory(*args, **kwargs):
        thread = threading.Thread(*args, **kwargs)
        thread.daemon = True
        return thread


class Enqueuer:
    """Queues messages for reactor code; disk work runs on its thread pool.

    The pool (4–16 threads, so fsyncs of concurrent messages overlap) is
    started with the reactor and stopped at shutdown unless one is given.
    """

    log = Logger()

    def __init__(self, home, env: Mapping[str, str], *, reactor=None,
                 threadpool: ThreadPool | None = None,
                 fsync_func: Callable[[int], None] = os.fsync,
                 high_water: int = 1 << 20, rng=None):
        if reactor is None:  # commands and makeService may rely on the global one
            from twisted.internet import reactor
        self.home = home
        self.env = dict(env)
        self.reactor = reactor
        self.fsync_func = fsync_func
        self.high_water = high_water
        self.rng = rng
        self._own_pool = threadpool is None
        if threadpool is None:
            threadpool = QueueThreadPool(minthreads=4, maxthreads=16, name="indimail-queue")
            if getattr(reactor, "running", False):
                threadpool.start()
            else:
                reactor.callWhenRunning(threadpool.start)
            self._shutdown_trigger = reactor.addSystemEventTrigger(
                "during", "shutdown", threadpool.stop)
        self.threadpool = threadpool

    def close(self) -> None:
        """Stop the thread pool this Enqueuer made (services call this from
        ``stopService``; a pool passed in belongs to the caller).  Work
        already handed to the pool finishes first."""
        if not self._own_pool:
            return
        self._own_pool = False
        self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
        if self.threadpool.started:
            self.threadpool.stop()

    def queues(self) -> list[QueueDir]:
        return configured_queues(self.env, self.home.queue_base)

    def _merged(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = dict(self.env.items())   # items(): an Environment's dict view, C speed
        if env is not None:
            merged.update(env.items())
        return merged

    def begin(self, env: Mapping[str, str] | None = None, *, invoked: str = "uid",
              remote_ip: str | None = None, uid: int | None = None) -> "IncomingMessage":
        """Start a message; the queue is chosen now from the (merged) env."""
        menv = self._merged(env)
        if remote_ip is None and invoked == "network":
            remote_ip = menv.get("TCPREMOTEIP")
        uid = os.getuid() if uid is None else uid
        if nullqueue(menv):
            return IncomingMessage(self, None, menv, b"")
        queue = select_queue(menv, self.home.queue_base, self.rng)
        writer = writer_for(queue, menv, uid=uid, fsync_func=self.fsync_func)
        received = received_line(writer.pid, uid, invoked, remote_ip,
                                 self.reactor.seconds())
        return IncomingMessage(self, writer, menv, received)

    def enqueue(self, sender: str, recipients: list[str], chunks: Iterable[bytes],
                env: Mapping[str, str] | None = None, invoked: str = "uid",
                remote_ip: str | None = None) -> defer.Deferred:
        """Queue a whole message from *chunks*; fires with the id."""
        async def run():
            message = self.begin(env, invoked=invoked, remote_ip=remote_ip)
            try:
                for chunk in chunks:
                    message.write(chunk)
                    if message.pending_bytes > self.high_water:
                        await message.wait_for_drain()
            except BaseException:
                await message.abort()
                raise
            return await message.finish(sender, recipients)
        return defer.ensureDeferred(run())

    def _in_thread(self, f, *args) -> defer.Deferred:
        """Run *f* on the pool; the result comes back on the reactor thread
        (directly when the pool runs work inline, see :mod:`.syncpool`)."""
        if isinstance(self.threadpool, SynchronousThreadPool):
            return defer.maybeDeferred(f, *args)
        return deferToThreadPool(self.reactor, self.threadpool, f, *args)


OPEN_AT = 64 * 1024   # bytes waiting before the mess file is made ahead of finish()


class IncomingMessage:
    """A message being streamed into the queue from the reactor thread.

    ``write()`` buffers; one writer at a time flushes the buffer to the mess
    file in a pool thread, so bytes arrive in order.  The mess file is made
    only when ``open_at`` bytes are waiting or at ``finish()``: a small
    message then costs one pool trip (make, write, commit) instead of three
    or four, each of which makes the reactor thread wait for the GIL.  Above
    ``high_water`` pending bytes a registered push producer is paused (and
    resumed below ``high_water // 4``); ``wait_for_drain()`` serves pull-style
    callers.
    """

    log = Logger()

    def __init__(self, enqueuer: Enqueuer, writer: QueueWriter | None,
                 env: Mapping[str, str], received: bytes):
        self._enq = enqueuer
        self._writer = writer
        self.env = env
        self.high_water = enqueuer.high_water
        self.low_water = enqueuer.high_water // 4
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._in_flight = 0
        self._busy = False
        self._failure: Failure | None = None
        self._finish: tuple | None = None
        self._finish_d: defer.Deferred | None = None
        self._drain_waiters: list[defer.Deferred] = []
        self._producer = None
        self._paused = False
        self._closed = False
        self._abort_waiters: list[defer.Deferred] = []
        self._cleaned = False
        self.peak_pending = 0
        self.msgid: int | None = None
        self.open_at = min(OPEN_AT, self.high_water)
        self._received: bytes | None = received if writer is not None else None

    @property
    def queue(self) -> QueueDir | None:
        return self._writer.queue if self._writer is not None else None

    @property
    def pending_bytes(self) -> int:
        """Bytes accepted by ``write()`` and not yet in the mess file."""
        return self._buffered + self._in_flight

    # IConsumer-style producer registration --------------------------------
    def registerProducer(self, producer, streaming: bool = True) -> None:
        self._producer = producer

    def unregisterProducer(self) -> None:
        self._producer = None
        self._paused = False

    def write(self, data: bytes) -> None:
        """Accept *data*; never blocks.  Errors surface from ``finish()``."""
        if self._closed:
            raise RuntimeError("write() after finish() or abort()")
        if self._writer is None or self._failure is not None or not data:
            return
        self._buffer.append(bytes(data))
        self._buffered += len(data)
        self.peak_pending = max(self.peak_pending, self.pending_bytes)
        if self.pending_bytes > self.high_water and self._producer is not None \
                and not self._paused:
            self._paused = True
            self._producer.pauseProducing()
        self._kick()

    def wait_for_drain(self) -> defer.Deferred:
        """Fires once pending bytes fall to the low-water mark (or on error)."""
        if self.pending_bytes <= self.low_water or self._failure is not None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drain_waiters.append(d)
        return d

    def finish(self, sender: str, recipients: list[str],
               extra_headers: str | None = None) -> defer.Deferred:
        """Queue the message; fires with its id once ``todo`` is durable,
        or errbacks with :class:`QueueError`."""
        if self._closed:
            raise RuntimeError("finish() called twice or after abort()")
        self._closed = True
        if self._writer is None:
            return defer.succeed(0)
        if extra_headers is None:
            extra_headers = self.env.get("QQEH")
        self._finish = (sender, list(recipients), qqeh_record(extra_headers))
        d = self._finish_d = defer.Deferred()
        self._kick()
        return d

    def abort(self) -> defer.Deferred:
        """Throw the message away; fires when its files are gone."""
        self._closed = True
        self._buffer.clear()
        self._buffered = 0
        if self._writer is None:
            return defer.succeed(None)
        if self._failure is None:
            self._failure = Failure(QueueError(errors.READ_ERROR, "message aborted"))
        self._release_waiters()
        d = defer.Deferred()
        self._abort_waiters.append(d)
        self._kick()
        return d

    # the serial writer ----------------------------------------------------
    def _run(self, f, *args, then) -> None:
        self._busy = True
        d = self._enq._in_thread(f, *args)
        d.addCallbacks(then, self._failed)
        d.addBoth(self._done)

    def _done(self, _):
        self._busy = False
        self._kick()

    def _open(self, received: bytes) -> int:
        """Runs in a pool thread: read control envheaders, make the mess file."""
        self._writer.collect_headers(load_envheaders(self.env, self._enq.home.control))
        return self._writer.open(received)

    def _open_write(self, received: bytes, chunk: bytes) -> int:
        """Runs in a pool thread: make the mess file and write what is waiting."""
        msgid = self._open(received)
        if chunk:
            self._writer.write(chunk)
        return msgid

    def _open_write_commit(self, received: bytes, chunk: bytes, sender: str,
                           recipients: list[str], qqeh: str | None) -> int:
        """Runs in a pool thread: a whole message in one trip."""
        self._open_write(received, chunk)
        return self._commit(sender, recipients, qqeh)

    def _opened(self, msgid: int) -> None:
        self.msgid = msgid

    def _wrote(self, _) -> None:
        self._in_flight = 0
        if self.pending_bytes <= self.low_water:
            self._release_waiters()

    def _failed(self, failure: Failure) -> None:
        if not failure.check(QueueError):
            self.log.failure("queue write failed", failure)
            failure = Failure(QueueError(errors.WRITE_ERROR))
        if self._failure is None:
            self._failure = failure
        self._in_flight = 0
        self._buffer.clear()
        self._buffered = 0
        self._release_waiters()

    def _release_waiters(self) -> None:
        if self._paused and self._producer is not None:
            self._paused = False
            self._producer.resumeProducing()
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)

    def _take_buffer(self) -> bytes:
        chunk = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._in_flight = len(chunk)
        return chunk

    def _kick(self) -> None:
        if self._busy:
            return
        writer = self._writer
        if self._received is not None and self._failure is None:
            self._first_trip()
            return
        if self._failure is not None:
            if self._cleaned or self._received is not None:   # nothing (left) on disk
                self._settle()
                return
            self._cleaned = True
            self._run(writer.abort, then=lambda _: None)
            return
        if self._buffer:
            self._run(writer.write, self._take_buffer(), then=self._wrote)
            return
        if self._finish is not None and self._finish_d is not None and not writer.committed:
            sender, recipients, qqeh = self._finish
            self._run(self._commit, sender, recipients, qqeh, then=self._committed)

    def _first_trip(self) -> None:
        """Make the mess file once enough is waiting, or the whole message at finish()."""
        received = self._received
        if self._finish is not None and self._finish_d is not None:
            self._received = None
            sender, recipients, qqeh = self._finish
            self._run(self._open_write_commit, received, self._take_buffer(), sender,
                      recipients, qqeh, then=self._wrote_committed)
        elif self._buffered >= self.open_at:
            self._received = None
            self._run(self._open_write, received, self._take_buffer(), then=self._opened_wrote)

    def _opened_wrote(self, msgid: int) -> None:
        self._opened(msgid)
        self._wrote(None)

    def _wrote_committed(self, msgid: int) -> None:
        self._wrote(None)
        self._opened(msgid)
        self._committed(msgid)

    def _commit(self, sender: str, recipients: list[str], qqeh: str | None) -> int:
        """Runs in a pool thread: add EXTRAQUEUE and mailarchive, commit."""
        from .mailarchive import with_archive
        extra = extra_recipients(self.env, self._enq.home.control)
        recipients = with_archive(self._enq.home.control, self.env, sender, recipients)
        env = Envelope(sender, extra + recipients, extra_headers=qqeh)
        return self._writer.commit(env, pull_trigger=False)

    def _committed(self, msgid: int) -> None:
        """The message is queued: tell the caller (the SMTP session sends its
        250 from this callback), then wake the delivery engine.  Pulled in the
        thread before, the trigger let the engine's threads take both cores
        while the 250 still waited for the writing thread to come back.  The
        pull is one non-blocking write to a FIFO: it never waits on the disk."""
        d, self._finish_d = self._finish_d, None
        try:
            d.callback(msgid)
        finally:
            trigger_pull(self._writer.queue.trigger)

    def _settle(self) -> None:
        """After cleanup of a failed/aborted message: report to waiters."""
        if self._finish_d is not None:
            d, self._finish_d = self._finish_d, None
            d.errback(self._failure)
        waiters, self._abort_waiters = self._abort_waiters, []
        for d in waiters:
            d.callback(None)
