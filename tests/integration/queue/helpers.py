"""Run the queue commands as real subprocesses against a temp home."""

import os
import subprocess
import sys
from pathlib import Path

from indimail.queue.fix import queue_fix
from tests.unit.queue.helpers import tmp_path
from indimail.queue.layout import QueueDir

SPLIT = 7


def make_home(testcase, count: int = 1) -> Path:
    """A home with *count* queues (split 7) and control/me."""
    root = Path(tmp_path(testcase)).absolute()
    (root / "control").mkdir(parents=True)
    (root / "control" / "me").write_text("mail.example.com\n")
    for n in range(1, count + 1):
        queue_fix(QueueDir(root / "queue" / f"queue{n}", SPLIT))
    return root


def command_env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QUEUE", "QMAIL", "MAIL", "EXTRAQUEUE", "NULLQUEUE",
                                "QQEH", "TCPREMOTEIP", "CONFSPLIT", "USE_", "MIN_FREE"))}
    env.update(INDIMAIL_HOME=str(home), CONFSPLIT=str(SPLIT), USE_FSYNC="0")
    env.update(extra)
    return env


def run(module: str, args, home: Path, stdin: bytes = b"", **extra):
    """``python -m indimail.cli.<module> args`` with stdin; (rc, out, err)."""
    proc = subprocess.run([sys.executable, "-m", f"indimail.cli.{module}", *args],
                          input=stdin, capture_output=True, env=command_env(home, **extra),
                          timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def run_qmail_queue(home: Path, message: bytes, envelope: bytes,
                    module: str = "qmail_queue", **extra) -> int:
    """qmail-queue (or *module*) with *message* on fd 0 and *envelope* on fd 1."""
    r, w = os.pipe()
    try:
        os.write(w, envelope)
        os.close(w)
        proc = subprocess.run([sys.executable, "-m", f"indimail.cli.{module}"],
                              input=message, stdout=r, stderr=subprocess.PIPE,
                              env=command_env(home, **extra), timeout=60)
    finally:
        os.close(r)
    return proc.returncode


def queue_of(home: Path, n: int = 1) -> QueueDir:
    return QueueDir(home / "queue" / f"queue{n}", SPLIT)


def todo_ids(queue: QueueDir) -> list[int]:
    return sorted(int(p.name) for p in (queue.path / "todo").glob("*/*"))
