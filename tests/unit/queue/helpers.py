"""Shared helpers for the queue tests: a fresh queue in a temp dir."""

import os
from pathlib import Path

from indimail.config.home import Home
from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir


def make_queue(testcase, split: int = 7, name: str = "queue1") -> QueueDir:
    """A fixed queue under the test's temp dir."""
    base = Path(tmp_path(testcase))
    base.mkdir()
    queue = QueueDir(base / name, split)
    queue_fix(queue)
    return queue


def make_home(testcase, count: int = 1, split: int = 7) -> Home:
    """A home with *count* fixed queues under ``queue/``."""
    root = Path(tmp_path(testcase)).absolute()
    (root / "queue").mkdir(parents=True)
    (root / "control").mkdir()
    for n in range(1, count + 1):
        queue_fix(QueueDir(root / "queue" / f"queue{n}", split))
    return Home(root)


def queue_files(queue: QueueDir) -> list[str]:
    """Every message file in the queue (relative paths), lock/ excluded."""
    out = []
    for dirpath, _dirs, files in os.walk(queue.path):
        rel = os.path.relpath(dirpath, queue.path)
        if rel.startswith("lock"):
            continue
        out += [os.path.join(rel, f) for f in files]
    return sorted(out)


def tmp_path(testcase) -> str:
    """A fresh path (not yet created) in the system temp dir, removed after
    the test; unlike ``mktemp()`` it never lands in the working tree."""
    import shutil
    import tempfile
    root = tempfile.mkdtemp(prefix="indimail-queue-test-")
    testcase.addCleanup(shutil.rmtree, root, True)
    return os.path.join(root, "t")
