"""Crash points inside finishing a message, and ids reused while one is finished."""

from __future__ import annotations

from indimail.queue.envelope import Envelope

from .helpers import inject
from .test_engine import EngineTestCase


class FinishCrashTests(EngineTestCase):

    def test_crash_after_mess_removed_is_finished_at_start(self):
        """A crash after qmail-clean's part (intd, mess gone) but before the info
        file went leaves info as the record: the next start removes it."""
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.queue.info(msgid).write_bytes(Envelope("s@far.test", []).info_bytes())
        for path in (self.queue.todo(msgid), self.queue.intd(msgid), self.queue.mess(msgid)):
            path.unlink()
        self.start(self.engine())
        self.assertGone(msgid)

    def test_finishing_removes_info_last(self):
        """messdone removes intd and mess before info (qmail-send's order)."""
        from indimail.send import disk
        removed = []
        original = disk.unlink
        self.patch(disk, "unlink", lambda path: removed.append(path) or original(path))
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        self.start(self.engine())
        self.assertGone(msgid)
        tail = [p for p in removed if p in (self.queue.intd(msgid), self.queue.mess(msgid),
                                            self.queue.info(msgid))]
        self.assertEqual(tail[-3:], [self.queue.intd(msgid), self.queue.mess(msgid),
                                     self.queue.info(msgid)])


class ReusedIdTests(EngineTestCase):

    def test_todo_waits_for_finish_of_same_id(self):
        """A new message that got the inode of a message still being finished is
        preprocessed only after the old one's files are gone."""
        engine = self.engine()
        self.start(engine)
        msgid = inject(self.queue, "s@far.test", ["a@example.net"])
        engine._finishing.add(msgid)
        engine.kick()
        self.clock.advance(0)
        self.assertTrue(self.queue.todo(msgid).exists())
        self.assertFalse(self.queue.info(msgid).exists())
        engine._finished(None, msgid)
        self.clock.advance(0)
        self.clock.advance(1)
        self.assertGone(msgid)
        self.assertEqual([c[2] for c in self.local.calls], ["a@example.net"])
