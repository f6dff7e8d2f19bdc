"""A running all-in-one IndiMail and a Postfix smtp-sink, for end-to-end tests."""

from __future__ import annotations

import signal
from pathlib import Path

from twisted.internet import defer, utils

from indimail.testing import (ChildProcess, child_env, free_port, make_tempdir, script,
                              smtp_sink_argv, twistd_argv, wait_for)


def files_in(directory: Path) -> list[Path]:
    """Regular files directly in *directory* (none when it is missing)."""
    try:
        return sorted(p for p in directory.iterdir() if p.is_file())
    except FileNotFoundError:
        return []


def tree_files(directory: Path) -> list[Path]:
    """Every regular file below *directory*."""
    return sorted(p for p in directory.rglob("*") if p.is_file())


class MailSystem:
    """A home with example.com, alice's dot-qmail, smtproutes to a sink."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.root = Path(make_tempdir())
        self.home = self.root / "home"
        self.sink_dir = self.root / "sink"
        self.sink_dir.mkdir()
        self.server: ChildProcess | None = None
        self.sink: ChildProcess | None = None
        self.smtp_port: int | None = None
        self.runs = 0

    @property
    def env(self) -> dict[str, str]:
        return child_env({"INDIMAIL_HOME": str(self.home), "PYTHONUNBUFFERED": "1"})

    @property
    def alice_new(self) -> Path:
        return self.home / "domains" / "example.com" / "alice" / "Maildir" / "new"

    async def run(self, *argv: str, stdin: bytes | None = None):
        """Run a console command of the project; returns (out, err, code)."""
        if stdin is None:
            return await utils.getProcessOutputAndValue(
                script(argv[0]), list(argv[1:]), env=self.env, reactor=self.reactor)
        # getProcessOutputAndValue has no stdin: go through a shell pipe.
        data = self.root / "stdin.eml"
        data.write_bytes(stdin)
        cmd = " ".join(_quote(a) for a in [script(argv[0]), *argv[1:]])
        return await utils.getProcessOutputAndValue(
            "/bin/sh", ["-c", f"{cmd} < {_quote(str(data))}"], env=self.env,
            reactor=self.reactor)

    async def setup(self):
        out, err, code = await self.run("indimail", "init", "--home", str(self.home),
                                        "--domain", "example.com")
        assert code == 0, (out, err)
        (self.home / "domains" / "example.com" / ".qmail-alice").write_text("./alice/Maildir/\n")
        sink_port = free_port()
        self.sink = ChildProcess(self.reactor, smtp_sink_argv(sink_port, str(self.sink_dir)))
        (self.home / "control" / "smtproutes").write_text(f":127.0.0.1:{sink_port}\n")

    async def start(self, argv: list[str] | None = None,
                    extra_env: dict[str, str] | None = None):
        """Start the all-in-one service; learn its SMTP port from its log."""
        argv = argv or twistd_argv("indimail", "--home", str(self.home),
                                   "--smtp", "tcp:0:interface=127.0.0.1",
                                   "--submission", "none", "--smtps", "none")
        env = {**self.env, **(extra_env or {})}
        self.server = ChildProcess(self.reactor, argv, env=env, cwd=str(self.root))
        match = await self.server.wait_output(r"starting on (\d+)")
        self.smtp_port = int(match.group(1))

    async def stop(self, sig=signal.SIGTERM):
        """Stop the service; its log is kept as ``server-N.log`` in the root."""
        if self.server is not None:
            server, self.server = self.server, None
            await server.kill(sig)
            self.runs += 1
            (self.root / f"server-{self.runs}.log").write_text(server.output)

    async def teardown(self):
        await self.stop()
        if self.sink is not None:
            await self.sink.kill()

    async def wait_files(self, directory: Path, count: int = 1, timeout: float = 60.0,
                         complete: bytes | None = None):
        """Wait for *count* files in *directory*; with *complete*, until every
        one of them holds those bytes (a peer may create a file before it
        writes it)."""
        def ready():
            files = files_in(directory)
            if len(files) < count:
                return None
            if complete is not None and not all(complete in f.read_bytes() for f in files):
                return None
            return files
        return await wait_for(self.reactor, ready, timeout=timeout,
                              what=f"{count} file(s) in {directory}")

    async def swaks(self, *args: str):
        out, err, code = await utils.getProcessOutputAndValue(
            "/usr/bin/swaks", ["--server", f"127.0.0.1:{self.smtp_port}", *args],
            env=self.env, reactor=self.reactor)
        return out.decode(), err.decode(), code


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def ensure_deferred(coro) -> defer.Deferred:
    return defer.ensureDeferred(coro)
