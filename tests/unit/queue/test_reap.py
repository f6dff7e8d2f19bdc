import os

from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.enqueue import QueueWriter
from indimail.queue.envelope import Envelope
from indimail.queue.reap import reap_dead_writers, writer_pid

from .helpers import make_queue

RECEIVED = b"Received: (indimail-mta 1 invoked by uid 0); Thu, 1 Jan 1970 00:00:00 +0000\n"


class ReapTests(SynchronousTestCase):
    def setUp(self):
        self.queue = make_queue(self)

    def _half_written(self, pid: int, with_intd: bool = False) -> int:
        w = QueueWriter(self.queue, fsync=False, syncdir=False, pid=pid)
        msgid = w.open(RECEIVED)
        w.write(b"Subject: half\n")
        if with_intd:
            w._write_intd(Envelope("a@b", ["c@d"], pid=pid).todo_bytes())
        # the writer "dies": its files stay as they are
        w._close()
        os.rename(w._pidfn, self.queue.pid_dir / f"{pid}.1.1")
        return msgid

    def test_dead_writer_files_removed(self):
        """A dead writer's pid, mess and intd files are removed."""
        msgid = self._half_written(999999, with_intd=True)
        removed = reap_dead_writers(self.queue, alive=lambda pid: False)
        self.assertEqual(len(removed), 3)
        self.assertFalse(self.queue.mess(msgid).exists())
        self.assertFalse(self.queue.intd(msgid).exists())
        self.assertEqual(list(self.queue.pid_dir.iterdir()), [])

    def test_live_writer_left_alone(self):
        """A writer that is still running keeps its files."""
        msgid = self._half_written(12345)
        self.assertEqual(reap_dead_writers(self.queue, alive=lambda pid: True), [])
        self.assertTrue(self.queue.mess(msgid).exists())

    def test_queued_message_kept(self):
        """When the todo link exists the message is queued: only the pid file goes."""
        w = QueueWriter(self.queue, fsync=False, syncdir=False, pid=4242)
        msgid = w.open(RECEIVED)
        pidfn = w._pidfn
        w._write_intd(Envelope("a@b", ["c@d"]).todo_bytes())
        w._link_todo()
        w._close()
        reap_dead_writers(self.queue, alive=lambda pid: False)
        self.assertTrue(self.queue.mess(msgid).exists())
        self.assertTrue(self.queue.todo(msgid).exists())
        self.assertFalse(os.path.exists(pidfn))

    def test_writer_pid(self):
        """The pid is the first dotted field of the pid file's name."""
        self.assertEqual(writer_pid("123.1700000000.4"), 123)
        self.assertIsNone(writer_pid("junk"))
