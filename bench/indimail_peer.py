"""This project, run the way an admin would: ``indimail init`` then ``twistd indimail``.

A fresh home per round under a temporary directory; ``alice@example.com`` is a
virtual-domain user whose ``.qmail-alice`` delivers to ``./alice/Maildir/``.
``twistd`` runs in the foreground in its own session so the harness can always
stop it (SIGTERM, then SIGKILL of the whole process group).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from peer import ManagedPeer
from ready import wait_for_banner

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RELAY_RECIPIENT = "bob@remote.example"   # not a local domain: relayed to the sink


class IndimailError(RuntimeError):
    """The all-in-one service is missing, or would not initialise or start."""


def venv_tool(name: str) -> Path:
    """A console script installed next to the running interpreter."""
    return Path(sys.executable).parent / name


def fsync_variables(syncdir: bool) -> dict[str, str]:
    """The qmail knobs that make queueing durable (Postfix fsyncs by default).
    Our default also fsyncs the todo directory; Postfix has no equivalent, so
    ``--no-syncdir`` measures without it."""
    return {"USE_FSYNC": "1", "USE_SYNCDIR": "1" if syncdir else "0"}


def preflight() -> None:
    """``twistd`` and ``indimail`` must sit next to the running interpreter."""
    for name in ("twistd", "indimail"):
        tool = venv_tool(name)
        if not os.access(tool, os.X_OK):
            raise IndimailError(f"{tool} not found: run the harness with the "
                                "project's virtualenv python (e.g. /tmp/venv/bin/python)")


class IndimailPeer(ManagedPeer):
    """Initialise a home, run ``twistd -n indimail`` on *port*, stop it afterwards."""

    name = "indimail"

    def __init__(self, root: Path, port: int, *, domain: str = "example.com",
                 user: str = "alice", syncdir: bool = True, relay_port: int | None = None,
                 twistd: Path | None = None, indimail: Path | None = None,
                 start_timeout: float = 60.0):
        self.root = Path(root)
        self.home = self.root / "home"
        self.port = port
        self.domain = domain
        self.user = user
        self.variables = fsync_variables(syncdir)
        self.relay_port = relay_port   # relay mode: smtproutes to a sink, remote recipient
        self.twistd = twistd or venv_tool("twistd")
        self.indimail = indimail or venv_tool("indimail")
        self.start_timeout = start_timeout
        self.logfile = self.root / "twistd.log"
        self._proc: subprocess.Popen | None = None

    @property
    def domain_dir(self) -> Path:
        return self.home / "domains" / self.domain

    @property
    def maildir_new(self) -> Path:
        return self.domain_dir / self.user / "Maildir" / "new"

    @property
    def recipient(self) -> str:
        if self.relay_port is not None:
            return RELAY_RECIPIENT
        return f"{self.user}@{self.domain}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("QUEUEDIR", None)
        env.pop("CONTROLDIR", None)
        env.pop("QUEUE_BASE", None)
        env["INDIMAIL_HOME"] = str(self.home)
        # An editable install does not put the tree on sys.path, so twistd
        # would not find twisted/plugins/indimail_all.py without this.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env.update(self.variables)
        return env

    def prepare(self) -> None:
        """``indimail init``, the mailbox and its ``.qmail`` file, fsync switches."""
        for tool in (self.twistd, self.indimail):
            if not os.access(tool, os.X_OK):
                raise IndimailError(f"{tool} not found: run the harness with the "
                                    "project's virtualenv python")
        self.root.mkdir(parents=True, exist_ok=True)
        init = subprocess.run(
            [str(self.indimail), "init", "--home", str(self.home),
             "--domain", self.domain],
            capture_output=True, text=True, env=self._env(), check=False)
        if init.returncode != 0:
            raise IndimailError(f"indimail init failed ({init.returncode}):\n"
                                f"{init.stderr}{init.stdout}")
        maildir = self.maildir_new.parent
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        (self.domain_dir / f".qmail-{self.user}").write_text(
            f"./{self.user}/Maildir/\n")
        if self.relay_port is not None:
            (self.home / "control" / "smtproutes").write_text(
                f":127.0.0.1:{self.relay_port}\n")
        for service in ("smtpd", "send"):
            vardir = self.home / "variables" / service
            vardir.mkdir(parents=True, exist_ok=True)
            for name, value in self.variables.items():
                (vardir / name).write_text(value + "\n")

    def command(self) -> list[str]:
        """twistd in the foreground, SMTP on our port only (no 2587/2465)."""
        return [str(self.twistd), "-n", "--pidfile=", "indimail",
                "--home", str(self.home),
                "--smtp", f"tcp:{self.port}:interface=127.0.0.1",
                "--submission", "none", "--smtps", "none"]

    def start(self) -> None:
        self.prepare()
        with open(self.logfile, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(self.root), env=self._env(), start_new_session=True)
        try:
            wait_for_banner("127.0.0.1", self.port, self.start_timeout,
                            alive=lambda: self._proc.poll() is None)
        except Exception as exc:
            raise IndimailError(f"twistd indimail did not come up: {exc}\n"
                                f"{self.log_tail()}") from exc

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (twistd drains its services), SIGKILL the group if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # stray children of the group
        except ProcessLookupError:
            pass
        proc.wait()
