"""queue_fix creates a queue with upstream's layout and modes, idempotently."""

import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir

from .helpers import tmp_path


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


class QueueFixTests(SynchronousTestCase):
    def setUp(self):
        self.queue = QueueDir(Path(tmp_path(self)) / "queue1", 7)
        self.queue.path.parent.mkdir()

    def test_creates_layout_and_modes(self):
        """Split dirs 0..split-1, flat dirs, lock files with reference §1 modes."""
        changes = queue_fix(self.queue)
        self.assertTrue(changes)
        root = self.queue.path
        for name, m in [("mess", 0o750), ("todo", 0o750), ("intd", 0o700),
                        ("info", 0o700), ("local", 0o700), ("remote", 0o700)]:
            self.assertEqual(mode(root / name), m)
            self.assertEqual(sorted(int(p.name) for p in (root / name).iterdir()),
                             list(range(7)))
            self.assertEqual(mode(root / name / "6"), m)
        self.assertEqual(mode(root / "bounce"), 0o700)
        self.assertEqual(mode(root / "pid"), 0o700)
        self.assertTrue((root / "trash").is_dir())
        self.assertTrue(stat.S_ISFIFO(os.lstat(root / "lock" / "trigger").st_mode))
        self.assertEqual(mode(root / "lock" / "trigger"), 0o622)
        self.assertEqual((root / "lock" / "sendmutex").stat().st_size, 0)
        self.assertEqual((root / "lock" / "tcpto").stat().st_size, 2048)

    def test_idempotent(self):
        """A second run on a good queue changes nothing."""
        queue_fix(self.queue)
        self.assertEqual(queue_fix(self.queue), [])

    def test_repairs(self):
        """Missing dirs, wrong modes and files in the wrong split dir are fixed."""
        queue_fix(self.queue)
        root = self.queue.path
        os.rmdir(root / "todo" / "3")
        os.chmod(root / "info", 0o755)
        os.unlink(root / "lock" / "trigger")
        misplaced = root / "mess" / "1" / "12"   # 12 % 7 == 5
        misplaced.write_bytes(b"x")
        os.chmod(misplaced, 0o600)
        changes = queue_fix(self.queue)
        self.assertIn(f"Creating directory [{root / 'todo' / '3'}]", changes)
        self.assertEqual(mode(root / "info"), 0o700)
        self.assertTrue(stat.S_ISFIFO(os.lstat(root / "lock" / "trigger").st_mode))
        self.assertTrue((root / "mess" / "5" / "12").exists())
        self.assertEqual(mode(root / "mess" / "5" / "12"), 0o644)
        self.assertEqual(queue_fix(self.queue), [])

    def test_dry_run(self):
        """dry_run reports what would change and touches nothing."""
        changes = queue_fix(self.queue, dry_run=True)
        self.assertTrue(changes)
        self.assertFalse(self.queue.path.exists())


class StrayTests(SynchronousTestCase):
    def test_strays_removed(self):
        """Files whose mess file is gone are unlinked; others are kept."""
        queue = QueueDir(Path(tmp_path(self)) / "queue1", 5)
        queue_fix(queue)
        queue.mess(7).write_bytes(b"m")
        queue.info(7).write_bytes(b"Fa\0")
        queue.info(8).write_bytes(b"Fa\0")
        queue.bounce(9).write_bytes(b"b")
        changes = queue_fix(queue)
        self.assertIn(f"Unlinking [{queue.info(8)}]", changes)
        self.assertIn(f"Unlinking [{queue.bounce(9)}]", changes)
        self.assertTrue(queue.info(7).exists())
        self.assertFalse(queue.info(8).exists())
