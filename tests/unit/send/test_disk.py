"""The delivery engine's blocking file steps spend no system call they do
not need: a closed channel file records its last results by going, and
todo processing replaces stale files instead of unlinking blindly."""

from __future__ import annotations

import errno
import os

from twisted.trial import unittest

from indimail.queue import todo as todo_module
from indimail.queue.todo import process_todo
from indimail.send import disk
from indimail.send.disk import close_channel

from .helpers import inject, make_queue, tempdir
from .test_todo import rewriter


class CloseChannelTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.queue = make_queue(tempdir(self))
        self.msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        process_todo(self.queue, self.msgid, rewriter())
        self.marked = []

    def mark(self, path, offset):
        self.marked.append((path, offset))
        disk.mark_done(path, offset)

    def test_removal_records_pending_marks(self):
        """The last recipient's D is not written when the file goes anyway;
        the message is finished in the same step."""
        last, state = close_channel(self.queue, self.msgid, "local", [0], self.mark,
                                    remove=True)
        self.assertEqual(self.marked, [])
        self.assertTrue(last)
        self.assertTrue(state.removed)
        self.assertFalse(self.queue.local(self.msgid).exists())
        self.assertFalse(self.queue.mess(self.msgid).exists())

    def test_failed_removal_writes_the_marks(self):
        """When the channel file cannot be removed its pending D marks are
        written before the error goes up, so a retry does not deliver again."""
        def broken(path):
            raise OSError(errno.EIO, "I/O error")
        self.patch(disk, "unlink", broken)
        self.assertRaises(OSError, close_channel, self.queue, self.msgid, "local", [0],
                          self.mark)
        self.assertEqual(len(self.marked), 1)
        self.assertEqual(self.queue.local(self.msgid).read_bytes()[:1], b"D")


class TodoUnlinkTests(unittest.SynchronousTestCase):

    def test_no_blind_unlinks(self):
        """A local-only message: only the unused remote channel, intd and
        todo are unlinked (no failed unlink of files not yet written)."""
        queue = make_queue(tempdir(self))
        msgid = inject(queue, "s@far.test", ["a@example.net"])
        unlinked = []
        real = os.unlink

        def spy(path, *args, **kwargs):
            unlinked.append(os.path.basename(os.path.dirname(os.path.dirname(path))))
            return real(path, *args, **kwargs)

        self.patch(todo_module.os, "unlink", spy)
        process_todo(queue, msgid, rewriter())
        self.assertEqual(unlinked, ["remote", "intd", "todo"])
