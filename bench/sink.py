"""Postfix's smtp-sink as the remote end of the relay benchmark.

It takes every message and writes each to its own file under a dump
directory (``-d DIR/%M.``), so delivery is counted the same way as a
Maildir: files in one directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from peer import ManagedPeer
from ready import wait_for_banner

SMTP_SINK = "/usr/sbin/smtp-sink"


class SinkPeer(ManagedPeer):
    """One smtp-sink on 127.0.0.1:*port* dumping into ``root/sink``."""

    name = "smtp-sink"

    def __init__(self, root: Path, port: int, backlog: int = 256):
        self.root = Path(root)
        self.port = port
        self.backlog = backlog
        self.dump_dir = self.root / "sink"
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:   # smtp-sink drops to an unprivileged user
            os.chmod(self.dump_dir, 0o777)
            for parent in self.dump_dir.resolve().parents:
                if parent == Path("/"):
                    break
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self._proc = subprocess.Popen(
            [SMTP_SINK, "-d", f"{self.dump_dir}/%M.", *user, f"127.0.0.1:{self.port}",
             str(self.backlog)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        wait_for_banner("127.0.0.1", self.port, 15.0,
                        alive=lambda: self._proc.poll() is None)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
