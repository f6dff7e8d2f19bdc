"""Stale-file cleanup of a queue."""

from __future__ import annotations

import os
import time

from twisted.trial import unittest

from indimail.queue.cleanup import OSSIFIED, cleanup_queue

from .helpers import inject, make_queue, tempdir


def age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


class CleanupTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.queue = make_queue(tempdir(self))
        self.now = time.time()

    def test_old_orphan_mess_removed(self):
        """A mess file older than 36 h with no other file is removed; a young
        one and one with an info file stay."""
        q = self.queue
        q.mess(11).write_bytes(b"x")
        age(q.mess(11), OSSIFIED + 10)
        q.mess(12).write_bytes(b"x")
        q.mess(13).write_bytes(b"x")
        age(q.mess(13), OSSIFIED + 10)
        q.info(13).write_bytes(b"F\0")
        removed = cleanup_queue(q, self.now)
        self.assertEqual(removed, [str(q.mess(11))])
        self.assertTrue(q.mess(12).exists() and q.mess(13).exists())

    def test_old_intd_and_pid(self):
        """intd without todo and pid files older than 36 h are removed."""
        q = self.queue
        q.intd(21).write_bytes(b"u1\0")
        age(q.intd(21), OSSIFIED + 10)
        pidfile = q.pid_dir / "123.1.1"
        pidfile.write_bytes(b"")
        age(pidfile, OSSIFIED + 10)
        young = q.pid_dir / "124.1.1"
        young.write_bytes(b"")
        cleanup_queue(q, self.now)
        self.assertFalse(q.intd(21).exists())
        self.assertFalse(pidfile.exists())
        self.assertTrue(young.exists())

    def test_queued_message_kept(self):
        """A queued message (todo present) is never touched."""
        msgid = inject(self.queue, "s@x", ["a@b"])
        for p in (self.queue.mess(msgid), self.queue.intd(msgid)):
            age(p, OSSIFIED + 10)
        cleanup_queue(self.queue, self.now)
        self.assertTrue(self.queue.mess(msgid).exists())
        self.assertTrue(self.queue.intd(msgid).exists())

    def test_dead_writer(self):
        """At start, a pid file of a dead writer goes at once with the message
        it never queued; a live writer's stays."""
        q = self.queue
        dead = q.pid_dir / "999999.1.1"
        dead.write_bytes(b"")
        msgid = os.stat(dead).st_ino
        os.link(dead, q.mess(msgid))
        live = q.pid_dir / f"{os.getpid()}.1.2"
        live.write_bytes(b"")
        cleanup_queue(q, self.now, dead_writers=True, alive=lambda pid: pid != 999999)
        self.assertFalse(dead.exists())
        self.assertFalse(q.mess(msgid).exists())
        self.assertTrue(live.exists())
