"""Queue files are spread over the disk's block groups (placement.py):
split directories are Orlov top directories, message inodes are made
unnamed round-robin in the mess directories and then named in pid/."""

import os
from pathlib import Path
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from indimail.queue import enqueue
from indimail.queue.envelope import Envelope
from indimail.queue.fix import queue_fix
from indimail.queue.layout import SPLIT_DIRS, QueueDir
from indimail.queue.placement import SpreadCreator, is_top, link_unnamed, mark_top

from .helpers import make_queue, tmp_path


def flags_supported(base: Path) -> bool:
    """Whether this file system keeps the top-directory flag (ext2/3/4 do;
    the CI machine's does)."""
    probe = base / "probe"
    probe.mkdir()
    return mark_top(probe) and is_top(probe)


class TopDirectoryTests(SynchronousTestCase):
    def setUp(self):
        self.base = Path(tmp_path(self))
        self.base.mkdir()

    def test_queue_fix_marks_queue_and_split_parents(self):
        """A new queue's root and its six split directories carry the flag
        (so their sub-directories were scattered when made); the split
        sub-directories themselves and the flat ones do not need it."""
        supported = flags_supported(self.base)
        queue = QueueDir(self.base / "queue1", 5)
        queue_fix(queue)
        self.assertEqual(is_top(queue.path), supported)
        for name in SPLIT_DIRS:
            self.assertEqual(is_top(queue.path / name), supported, name)
        self.assertFalse(is_top(queue.path / "mess" / "0"))
        self.assertFalse(is_top(queue.path / "pid"))
        if os.environ.get("CI") == "true":
            # CI runs on ext4, where the flag must work
            self.assertTrue(supported)

    def test_second_fix_reports_nothing(self):
        """The flag is set when a directory is made; a second run changes nothing."""
        queue = QueueDir(self.base / "queue1", 3)
        queue_fix(queue)
        self.assertEqual(queue_fix(queue), [])

    def test_mark_top_on_missing_directory(self):
        """Best effort: a path that cannot be opened is just False."""
        self.assertFalse(mark_top(self.base / "absent"))
        self.assertFalse(is_top(self.base / "absent"))


class SpreadCreatorTests(SynchronousTestCase):
    def setUp(self):
        self.base = Path(tmp_path(self))
        self.base.mkdir()
        self.dirs = []
        for n in range(3):
            (self.base / str(n)).mkdir()
            self.dirs.append(str(self.base / str(n)))

    def test_round_robin_unnamed_files(self):
        """Each open makes an unnamed file, in the next directory in turn:
        nothing shows in any directory until it is linked."""
        creator = SpreadCreator(self.dirs)
        self.assertTrue(creator.enabled)
        fds = [creator.open(0o644) for _ in range(4)]
        try:
            self.assertNotIn(None, fds)
            for d in self.dirs:
                self.assertEqual(os.listdir(d), [])
            inodes = {os.fstat(fd).st_ino for fd in fds}
            self.assertEqual(len(inodes), 4)
            os.write(fds[0], b"hello")
            link_unnamed(fds[0], self.base / "named")
            self.assertEqual((self.base / "named").read_bytes(), b"hello")
            self.assertEqual((self.base / "named").stat().st_ino, os.fstat(fds[0]).st_ino)
            with self.assertRaises(FileExistsError):
                link_unnamed(fds[1], self.base / "named")
        finally:
            for fd in fds:
                if fd is not None:
                    os.close(fd)

    def test_unusable_directory_disables(self):
        """A directory where no unnamed file can be made turns the creator
        off (the caller then creates named files as upstream)."""
        creator = SpreadCreator([str(self.base / "absent")])
        self.assertIsNone(creator.open(0o644))
        self.assertFalse(creator.enabled)
        self.assertIsNone(creator.open(0o644))

    def test_passing_trouble_does_not_disable(self):
        """Out of descriptors (or space) says nothing about the file system:
        this message goes the old way, the next one tries again."""
        import errno

        creator = SpreadCreator(self.dirs)

        def full(*args):
            raise OSError(errno.EMFILE, "Too many open files")

        with mock.patch("indimail.queue.placement.os.open", full):
            self.assertIsNone(creator.open(0o644))
        self.assertTrue(creator.enabled)
        fd = creator.open(0o644)
        self.assertIsNotNone(fd)
        os.close(fd)

    def test_no_directories(self):
        self.assertFalse(SpreadCreator([]).enabled)


class WriterPlacementTests(SynchronousTestCase):
    def setUp(self):
        self.queue = make_queue(self, split=7)
        enqueue._creators.pop(str(self.queue.path), None)

    def enqueue_one(self) -> int:
        writer = enqueue.QueueWriter(self.queue, uid=1000, pid=42, now=0)
        writer.open(b"Received: x\n")
        writer.write(b"Subject: t\n\nbody\n")
        return writer.commit(Envelope("a@example.org", ["b@example.com"]))

    def test_message_inode_made_in_mess_directories(self):
        """The writer asks the queue's round-robin over mess/0..split-1 for
        the inode (then names it pid/..., links mess/S/id, as before)."""
        made, created = [], []
        real_open = os.open

        def spy(path, flags, *args):
            if flags & os.O_TMPFILE == os.O_TMPFILE:
                made.append(str(path))
            elif flags & os.O_CREAT:
                created.append(str(path))
            return real_open(path, flags, *args)

        with mock.patch.object(enqueue.os, "open", spy):
            ids = [self.enqueue_one() for _ in range(3)]
        self.assertEqual(len(made), 3)
        mess = str(self.queue.path / "mess")
        for path in made:
            self.assertEqual(os.path.dirname(path), mess)
        self.assertEqual(len(set(made)), 3)   # three different directories
        # the unnamed inode got its pid name: nothing was created in pid/
        self.assertEqual([p for p in created if "/pid/" in p], [])
        for msgid in ids:
            self.assertEqual(os.stat(self.queue.file("mess", msgid)).st_ino, msgid)
            self.assertEqual(os.stat(self.queue.file("todo", msgid)).st_ino,
                             os.stat(self.queue.file("intd", msgid)).st_ino)
        self.assertEqual(list(self.queue.pid_dir.iterdir()), [])

    def test_falls_back_to_pid_file(self):
        """Where unnamed files cannot be made, the pid file is created in
        pid/ as upstream does, and the message is queued all the same."""
        creator = enqueue._spread_creator(self.queue)
        creator.enabled = False
        msgid = self.enqueue_one()
        self.assertEqual(os.stat(self.queue.file("mess", msgid)).st_ino, msgid)
        self.assertTrue(os.path.exists(self.queue.file("todo", msgid)))

    def test_missing_pid_dir_leaves_nothing(self):
        """The unnamed inode is dropped when its pid name cannot be made:
        no file is left in any mess directory, and the error is upstream's."""
        os.rmdir(self.queue.pid_dir)
        writer = enqueue.QueueWriter(self.queue, uid=1000, pid=42, now=0)
        with self.assertRaises(enqueue.QueueError):
            writer.open(b"Received: x\n")
        for n in range(7):
            self.assertEqual(os.listdir(self.queue.path / "mess" / str(n)), [])
        self.assertTrue(enqueue._spread_creator(self.queue).enabled)
