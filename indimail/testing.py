"""Helpers shared by the test suites: real processes and peers on loopback.

Kept in the package (not under tests/) so every suite, and the benchmarks,
start servers and peers the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Callable

from twisted.internet import defer, protocol, task


def source_root() -> Path | None:
    """The checkout this package runs from, when it is one (it holds the
    twistd dropins); None for an installed package."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "twisted" / "plugins" / "indimail_all.py").exists() else None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process of a test.

    From a checkout installed in editable mode the checkout is not on
    ``sys.path``, so twistd would not see our dropins in ``twisted/plugins``;
    putting the checkout first on ``PYTHONPATH`` makes children import the
    code under test."""
    env = os.environ.copy()
    root = source_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra or {})
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on *host* (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def script(name: str) -> str:
    """The console script *name* installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed")
    return found


async def wait_for(reactor, predicate: Callable[[], object], timeout: float = 30.0,
                   interval: float = 0.05, what: str = "condition"):
    """Poll *predicate* until it returns something true; fail after *timeout* s.

    For things that have no event to wait on, such as a file appearing in a
    Maildir written by another process."""
    deadline = reactor.seconds() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await task.deferLater(reactor, interval, lambda: None)


class _Collect(protocol.ProcessProtocol):
    """Collects a child's output and fires waiters on lines that match."""

    def __init__(self):
        self.output = b""
        self.ended = defer.Deferred()
        self._waiters: list[tuple[re.Pattern, defer.Deferred]] = []

    def outReceived(self, data: bytes):
        self._feed(data)

    def errReceived(self, data: bytes):
        self._feed(data)

    def _feed(self, data: bytes):
        self.output += data
        text = self.output.decode("utf-8", "replace")
        for pattern, d in list(self._waiters):
            m = pattern.search(text)
            if m:
                self._waiters.remove((pattern, d))
                d.callback(m)

    def wait_output(self, regex: str) -> defer.Deferred:
        d = defer.Deferred()
        self._waiters.append((re.compile(regex), d))
        self._feed(b"")
        return d

    def processEnded(self, reason):
        for _, d in self._waiters:
            d.errback(AssertionError("process ended before expected output:\n"
                                     + self.output.decode("utf-8", "replace")[-4000:]))
        self._waiters = []
        self.ended.callback(reason.value.exitCode if hasattr(reason.value, "exitCode") else None)


class ChildProcess:
    """A real child process (a server or a peer) driven from a test."""

    def __init__(self, reactor, argv: list[str], env: dict[str, str] | None = None,
                 cwd: str | None = None):
        self.reactor = reactor
        self.argv = argv
        self.proto = _Collect()
        self.transport = reactor.spawnProcess(
            self.proto, argv[0], argv, env=env if env is not None else child_env(),
            path=cwd)

    @property
    def pid(self) -> int:
        return self.transport.pid

    @property
    def output(self) -> str:
        return self.proto.output.decode("utf-8", "replace")

    def wait_output(self, regex: str, timeout: float = 30.0) -> defer.Deferred:
        d = self.proto.wait_output(regex)
        return d.addTimeout(timeout, self.reactor)

    def kill(self, sig: int = signal.SIGTERM) -> defer.Deferred:
        """Send *sig* (if still running) and wait for the process to end."""
        if self.transport.pid is not None:
            try:
                self.transport.signalProcess(sig)
            except Exception:
                pass
        return self.proto.ended


def twistd_argv(*args: str) -> list[str]:
    """argv for a foreground twistd run with logs on stdout and no pidfile."""
    return [script("twistd"), "-n", "--pidfile=", "--logfile=-", *args]


def smtp_sink_argv(port: int, dump_dir: str) -> list[str]:
    """Postfix's smtp-sink dumping every message into *dump_dir*."""
    argv = ["/usr/sbin/smtp-sink", "-d", os.path.join(dump_dir, "%M.")]
    if os.geteuid() == 0:
        # smtp-sink drops to an unprivileged user: it must reach the directory.
        os.chmod(dump_dir, 0o777)
        for parent in Path(dump_dir).resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o011)
            if parent == Path(tempfile.gettempdir()).resolve():
                break
        argv += ["-u", "nobody"]
    return argv + [f"127.0.0.1:{port}", "100"]


def make_tempdir(prefix: str = "indimail-test-") -> str:
    return tempfile.mkdtemp(prefix=prefix)
