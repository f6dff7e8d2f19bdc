"""SMTP worker processes sharing the listening sockets (one per core).

One Python process is bound to one core by the GIL; Postfix spreads its
smtpd over many processes.  With ``--smtp-workers N`` the all-in-one
service binds every SMTP listener itself (so bind errors and the
``starting on PORT`` line stay in the main process), stops accepting on
them, and hands the listening sockets to N worker processes
(``python -m indimail.smtp.worker``), which accept, speak SMTP and queue.
The least busy worker takes the next connection
(:mod:`indimail.smtp.sharedport`).  The main process
keeps the delivery engine, restarts a worker that dies, forwards SIGHUP and
stops the workers (they finish their sessions) when it stops.  Workers log
through their stdout, which the main process re-emits into its own log.

Connection limits (``MAXDAEMONS``, ``MAXPERIP``) hold for the whole
service: the main process creates a :class:`~indimail.smtp.limits.SharedTable`
(one region per worker number, zeroed when its worker dies) and hands its fd
to every worker (``--limits FD --worker N``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from dataclasses import dataclass

from twisted.application import service
from pathlib import Path

from twisted.internet import defer, endpoints, protocol, task, threads
from twisted.python.failure import Failure

from indimail.fastlog import Logger
from indimail.queue.layout import QueueDir, split_from_env
from indimail.queue.reap import pid_alive, reap_dead_writers
from indimail.smtp.limits import SharedTable

log = Logger()

RESTART_DELAY = 1.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class ListenerSpec:
    """One listener: its endpoint string, environment flavour and TLS flag."""

    name: str
    description: str
    flavour: str = "smtpd"
    tls: bool = False


def auto_workers() -> int:
    """The default: one worker per core, none (in-process) on one core."""
    cores = os.cpu_count() or 1
    return cores if cores > 1 else 0


class _Refuse(protocol.ServerFactory):
    """The main process's factory: it never accepts (reading is stopped)."""

    noisy = True

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return "SMTPFactory"

    def logPrefix(self) -> str:
        return "SMTPFactory"

    def buildProtocol(self, addr):
        return None


class _WorkerProcess(protocol.ProcessProtocol):
    """One worker: relays its log lines and reports its end."""

    def __init__(self, pool: "WorkerPool", number: int):
        self.pool = pool
        self.number = number
        self.ended = defer.Deferred()
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buffer = self._partial.get(fd, b"") + data
        *lines, self._partial[fd] = buffer.split(b"\n")
        for line in lines:
            if line:
                log.info("smtpd worker {n}: {line}", n=self.number,
                         line=line.decode("utf-8", "replace"))

    def processEnded(self, reason) -> None:
        code = getattr(reason.value, "exitCode", None)
        self.ended.callback(code)
        self.pool.worker_ended(self, code)


class WorkerPool(service.Service):
    """Bind the listeners, run *count* workers on them, supervise them."""

    name = "smtpd-workers"

    def __init__(self, home_path: str, listeners: list[ListenerSpec], count: int, *,
                 reactor, env: dict[str, str] | None = None,
                 python: str = sys.executable):
        self.home_path = home_path
        self.listeners = listeners
        self.count = count
        self.reactor = reactor
        self.env = dict(os.environ if env is None else env)
        self.python = python
        self.ports: list = []
        self.workers: dict[int, _WorkerProcess] = {}
        self.transports: dict[int, object] = {}
        self._stopping = False
        self._previous_hup = None
        self.limits: SharedTable | None = None   # the workers' shared session counts

    # -- listening ----------------------------------------------------------
    def _bind(self) -> None:
        for spec in self.listeners:
            description = spec.description
            if description.startswith("ssl:"):
                # the main process never speaks TLS: bind the same address as TCP
                description = _as_tcp(description)
            endpoint = endpoints.serverFromString(self.reactor, description)
            results: list = []
            endpoint.listen(_Refuse(spec.name)).addBoth(results.append)
            port = results[0]     # TCP endpoints listen at once
            if isinstance(port, Failure):
                port.raiseException()
            port.stopReading()    # only the workers accept
            self.ports.append(port)

    def worker_argv(self, number: int = 1) -> tuple[list[str], dict[int, object]]:
        argv = [self.python, "-m", "indimail.smtp.worker", "--home", self.home_path]
        fds: dict[int, object] = {0: "w", 1: "r", 2: "r"}
        for i, (spec, port) in enumerate(zip(self.listeners, self.ports)):
            child_fd = 3 + i
            fds[child_fd] = port.fileno()
            argv += ["--listen", f"{child_fd}:{spec.flavour}:{int(spec.tls)}:{spec.description}"]
        if self.limits is not None:
            child_fd = 3 + len(self.ports)
            fds[child_fd] = self.limits.fd
            argv += ["--limits", str(child_fd), "--worker", str(number)]
        return argv, fds

    # -- workers --------------------------------------------------------------
    def _spawn(self, number: int) -> None:
        argv, fds = self.worker_argv(number)
        proto = _WorkerProcess(self, number)
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.transports[number] = self.reactor.spawnProcess(
            proto, self.python, argv, env=env, childFDs=fds)
        self.workers[number] = proto

    def worker_ended(self, proto: _WorkerProcess, code) -> None:
        if self.workers.get(proto.number) is not proto:
            return
        del self.workers[proto.number]
        self.transports.pop(proto.number, None)
        if self.limits is not None:   # its sessions are gone with it
            self.limits.reset(proto.number)
        if self._stopping:
            return
        log.warn("smtpd worker {n} ended ({code}); restarting", n=proto.number, code=code)
        self.reactor.callLater(RESTART_DELAY, self._respawn, proto.number)

    def _respawn(self, number: int) -> None:
        if not self._stopping and number not in self.workers:
            self._spawn(number)

    def signal_workers(self, sig: int) -> None:
        for transport in list(self.transports.values()):
            try:
                transport.signalProcess(sig)
            except Exception:   # already gone
                pass

    # -- taking over from a crashed main process ------------------------------
    async def _take_over(self, orphans: list[int]) -> None:
        """Stop the workers a killed main process left behind (they hold its
        sockets and may be half-way through messages), remove what they left
        half-written, then listen and start our own workers."""
        log.warn("stopping {n} smtpd worker(s) of a previous run: {pids}",
                 n=len(orphans), pids=orphans)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in orphans:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            for _ in range(100):
                orphans = [pid for pid in orphans if pid_alive(pid)]
                if not orphans:
                    break
                await task.deferLater(self.reactor, 0.05, lambda: None)
            if not orphans:
                break
        queues = self.queues()
        await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                        lambda: [reap_dead_writers(q) for q in queues])
        if not self._stopping:
            self._bind()
            self._spawn_all()

    def queues(self) -> list[QueueDir]:
        """Every queue directory under the home (whatever the env selects)."""
        base = Path(self.home_path) / "queue"
        split = split_from_env(self.env)
        try:
            return [QueueDir(p, split) for p in sorted(base.iterdir()) if (p / "pid").is_dir()]
        except FileNotFoundError:
            return []

    def _spawn_all(self) -> None:
        if self.limits is None:
            self.limits = SharedTable.create(self.count, scopes=max(1, len(self.listeners)))
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _start_failed(self, failure: Failure) -> None:
        log.failure("smtpd workers could not start; stopping", failure)
        self.reactor.stop()

    # -- service ----------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        orphans = find_workers(self.home_path)
        if orphans:
            d = defer.ensureDeferred(self._take_over(orphans))
            d.addErrback(self._start_failed)
        else:
            self._bind()
            self._spawn_all()
        try:
            self._previous_hup = signal.signal(signal.SIGHUP, self._on_hup)
        except ValueError:   # not the main thread
            self._previous_hup = None

    def _on_hup(self, signum, frame) -> None:
        self.reactor.callFromThread(self.signal_workers, signal.SIGHUP)
        previous = self._previous_hup
        if callable(previous):
            previous(signum, frame)

    def stopService(self):
        """SIGTERM the workers (they finish open sessions), then close the sockets."""
        self._stopping = True
        super().stopService()
        if self._previous_hup is not None:
            try:
                signal.signal(signal.SIGHUP, self._previous_hup)
            except ValueError:
                pass
        waits = [w.ended for w in self.workers.values()]
        self.signal_workers(signal.SIGTERM)
        killer = self.reactor.callLater(STOP_TIMEOUT, self.signal_workers, signal.SIGKILL)
        d = defer.DeferredList(waits)

        def done(_):
            if killer.active():
                killer.cancel()
            if self.limits is not None:
                self.limits.close()
                self.limits = None
            return defer.DeferredList([defer.maybeDeferred(p.stopListening)
                                       for p in self.ports])
        return d.addBoth(done)


def _as_tcp(description: str) -> str:
    """``ssl:465:interface=X:privateKey=...`` → ``tcp:465:interface=X``
    (colons escaped with a backslash stay inside their field)."""
    parts = re.split(r"(?<!\\):", description)
    keep = ["tcp", parts[1]] + [p for p in parts[2:]
                               if p.split("=", 1)[0] in ("interface", "backlog")]
    return ":".join(keep)


def find_workers(home_path: str) -> list[int]:
    """Pids of running worker processes of *home_path* that are not ours
    (Linux ``/proc``)."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"indimail.smtp.worker" not in argv:
            continue
        try:
            home = argv[argv.index(b"--home") + 1].decode()
        except (ValueError, IndexError):
            continue
        pid = int(entry)
        if home == home_path and pid != me and pid_alive(pid) and _parent(pid) != me:
            found.append(pid)
    return found


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def family_of(fd: int) -> int:
    """The address family of listening socket *fd*."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        return sock.family
    finally:
        sock.close()
