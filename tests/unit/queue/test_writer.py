"""QueueWriter: the blocking, crash-safe enqueue of reference §1."""

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.enqueue import (QueueWriter, fsync_enabled, min_free,
                                    syncdir_enabled, writer_for)
from indimail.queue.envelope import Envelope
from indimail.queue.errors import QueueError
from indimail.persecond import PerSecond
from indimail.queue.received import received_line, rfc5322_date

from .helpers import make_queue, queue_files, tmp_path

RECEIVED = b"Received: (indimail-mta 42 invoked by uid 1000); Thu, 01 Jan 1970 00:00:00 +0000\n"


class ReceivedLineTests(SynchronousTestCase):
    def test_forms(self):
        """The four Received forms of reference §1."""
        date = rfc5322_date(0)
        self.assertEqual(received_line(42, 1000, now=0),
                         f"Received: (indimail-mta 42 invoked by uid 1000); {date}\n".encode())
        self.assertEqual(received_line(42, 7, "network", "192.0.2.1", now=0),
                         f"Received: (indimail-mta 42 invoked from network 192.0.2.1); {date}\n".encode())
        self.assertIn(b"(indimail-mta 42 invoked for bounce); ", received_line(42, 7, "bounce", now=0))
        self.assertIn(b"(indimail-mta 42 invoked by alias); ", received_line(42, 7, "alias", now=0))
        self.assertIn(b"invoked from network ::1, by uid 7)", received_line(42, 7, remote_ip="::1", now=0))

    def test_date_is_rfc5322(self):
        """The date looks like 'Fri, 21 Oct 2022 23:04:36 +0530'."""
        self.assertRegex(rfc5322_date(1666373676),
                         r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")

    def test_date_made_once_per_second_is_the_same_text(self):
        """The per-second cache gives what formatting each time gives, for
        fractions of a second, a new second, and a fraction that rounds up."""
        from indimail.queue import received
        for now in (1666373676.0, 1666373676.25, 1666373676.75, 1666373677.5,
                    1666373677.9999997, 1666373676.5):
            self.assertEqual(rfc5322_date(now), received._format(now), now)
        calls = []
        self.patch(received, "_dates", PerSecond(lambda now: calls.append(now) or "text"))
        self.assertEqual([rfc5322_date(t) for t in (10.1, 10.9, 11.0)], ["text"] * 3)
        self.assertEqual(calls, [10, 11])

    def test_bad_invoked(self):
        """An unknown invoked form is a programming error."""
        self.assertRaises(ValueError, received_line, 1, 1, "sideways")


class SwitchTests(SynchronousTestCase):
    def test_fsync_rule(self):
        """fsync and syncdir are on unless USE_FSYNC/USE_SYNCDIR is set empty or 0."""
        self.assertTrue(fsync_enabled({}))
        self.assertTrue(fsync_enabled({"USE_FSYNC": "1"}))
        self.assertFalse(fsync_enabled({"USE_FSYNC": ""}))
        self.assertFalse(fsync_enabled({"USE_FSYNC": "0"}))
        self.assertTrue(syncdir_enabled({}))
        self.assertFalse(syncdir_enabled({"USE_SYNCDIR": ""}))
        self.assertFalse(syncdir_enabled({"USE_SYNCDIR": "0"}))
        self.assertTrue(syncdir_enabled({"USE_SYNCDIR": "1"}))
        self.assertEqual(min_free({"MIN_FREE": "1000"}), 1000)
        self.assertEqual(min_free({"MIN_FREE": "x"}), 0)


class QueueWriterTests(SynchronousTestCase):
    def setUp(self):
        self.queue = make_queue(self)
        self.synced = []

    def writer(self, **kw):
        kw.setdefault("fsync_func", self.synced.append)
        return QueueWriter(self.queue, uid=1000, pid=42, now=0, **kw)

    def test_golden_bytes(self):
        """mess = Received + message; intd and todo = u p F T e h records;
        split paths; modes 0644; no pid file left; id = inode."""
        w = self.writer()
        msgid = w.open(RECEIVED)
        w.write(b"Subject: x\n\n")
        w.write(b"body\n")
        env = Envelope("a@example.com", ["b@example.org", "c@example.net"],
                       extra_headers="X-QHPSI: clean\n", env_headers="X-Env: 1\n")
        self.assertEqual(w.commit(env), msgid)
        q = self.queue
        self.assertEqual(q.mess(msgid).read_bytes(), RECEIVED + b"Subject: x\n\nbody\n")
        expected = (b"u1000\0p42\0Fa@example.com\0Tb@example.org\0Tc@example.net\0"
                    b"eX-QHPSI: clean\n\0hX-Env: 1\n\0")
        self.assertEqual(q.todo(msgid).read_bytes(), expected)
        self.assertEqual(q.intd(msgid).read_bytes(), expected)
        self.assertEqual(os.stat(q.mess(msgid)).st_ino, msgid)
        s = str(msgid % 7)
        self.assertEqual(queue_files(q), sorted([f"intd/{s}/{msgid}", f"mess/{s}/{msgid}",
                                                 f"todo/{s}/{msgid}"]))
        old = os.umask(0o077)
        self.addCleanup(os.umask, old)
        w2 = self.writer()
        id2 = w2.open(RECEIVED)
        w2.commit(env)
        for path in (q.mess(msgid), q.todo(msgid), q.intd(msgid), q.mess(id2), q.todo(id2)):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
        self.assertEqual(list(q.pid_dir.iterdir()), [])

    def test_fsync_called(self):
        """With fsync, mess and intd are fsynced before the todo link."""
        w = self.writer(fsync=True)
        w.open(RECEIVED)
        w.commit(Envelope("a@b", ["c@d"]))
        self.assertEqual(len(self.synced), 2)

    def test_no_fsync(self):
        """Without fsync nothing is synced."""
        w = self.writer(fsync=False)
        w.open(RECEIVED)
        w.commit(Envelope("a@b", ["c@d"]))
        self.assertEqual(self.synced, [])

    def test_syncdir(self):
        """USE_SYNCDIR fsyncs the todo directory after the link."""
        w = self.writer(fsync=False, syncdir=True)
        w.open(RECEIVED)
        w.commit(Envelope("a@b", ["c@d"]))
        self.assertEqual(len(self.synced), 1)

    def test_writer_for_env(self):
        """writer_for reads USE_FSYNC, USE_SYNCDIR and MIN_FREE from env."""
        w = writer_for(self.queue, {"USE_FSYNC": "", "USE_SYNCDIR": "1", "MIN_FREE": "5"})
        self.assertEqual((w.fsync, w.syncdir, w.min_free), (False, True, 5))

    def test_trigger_gets_a_byte(self):
        """After commit one byte is written to lock/trigger."""
        fd = os.open(self.queue.trigger, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, fd)
        w = self.writer()
        w.open(RECEIVED)
        w.commit(Envelope("a@b", ["c@d"]))
        self.assertEqual(os.read(fd, 10), b"\0")

    def test_trigger_left_to_the_caller(self):
        """commit(pull_trigger=False) queues the message and writes no byte."""
        fd = os.open(self.queue.trigger, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, fd)
        w = self.writer()
        w.open(RECEIVED)
        msgid = w.commit(Envelope("a@b", ["c@d"]), pull_trigger=False)
        self.assertTrue(self.queue.todo(msgid).exists())
        self.assertEqual(os.read(fd, 10), b"")   # no writer ever came

    def test_trigger_without_reader(self):
        """No reader on the FIFO is not an error."""
        w = self.writer()
        w.open(RECEIVED)
        self.assertTrue(w.commit(Envelope("a@b", ["c@d"])) > 0)

    def test_min_free(self):
        """MIN_FREE above the free space is a temporary error 53, nothing made."""
        w = self.writer(min_free=1 << 62)
        e = self.assertRaises(QueueError, w.open, RECEIVED)
        self.assertEqual(e.code, 53)
        self.assertTrue(e.temporary)
        self.assertEqual(queue_files(self.queue), [])

    def test_address_too_long(self):
        """An address of 1003 bytes or more is exit 11 and cleans up."""
        w = self.writer()
        w.open(RECEIVED)
        e = self.assertRaises(QueueError, w.commit, Envelope("a@b", ["x" * 1003]))
        self.assertEqual(e.code, 11)
        self.assertFalse(e.temporary)
        self.assertEqual(queue_files(self.queue), [])
        w2 = self.writer()
        w2.open(RECEIVED)
        w2.commit(Envelope("a@b", ["x" * 1002]))

    def test_abort(self):
        """abort() removes the mess file."""
        w = self.writer()
        w.open(RECEIVED)
        w.write(b"data")
        w.abort()
        self.assertEqual(queue_files(self.queue), [])

    def test_pid_dir_missing(self):
        """No pid/ directory: exit 63 (trouble creating files in queue)."""
        os.rmdir(self.queue.pid_dir)
        e = self.assertRaises(QueueError, self.writer().open, RECEIVED)
        self.assertEqual(e.code, 63)


class CrashSafetyTests(SynchronousTestCase):
    """A failure injected between stages leaves no todo and no partial files."""

    def setUp(self):
        self.queue = make_queue(self)

    def run_failing(self, stage):
        queue = self.queue

        class Failing(QueueWriter):
            def _write_intd(self, data):
                if stage == "intd":
                    raise OSError("injected")
                super()._write_intd(data)

            def _sync(self):
                if stage == "sync":
                    raise OSError("injected")
                super()._sync()

            def _link_todo(self):
                if stage == "link":
                    raise QueueError(66)
                super()._link_todo()

        w = Failing(queue, fsync_func=lambda fd: None)
        w.open(RECEIVED)
        w.write(b"x" * 10000)
        e = self.assertRaises(QueueError, w.commit, Envelope("a@b", ["c@d"]))
        self.assertEqual(queue_files(queue), [])
        return e

    def test_fail_writing_intd(self):
        """Stage 3 write failure: exit 53, mess and intd removed."""
        self.assertEqual(self.run_failing("intd").code, 53)

    def test_fail_fsync(self):
        """fsync failure: exit 53, nothing left."""
        self.assertEqual(self.run_failing("sync").code, 53)

    def test_fail_link(self):
        """Stage 4 link failure: exit 66, nothing left."""
        self.assertEqual(self.run_failing("link").code, 66)

    def test_fail_writing_message(self):
        """Stage 2 write failure (bad fd): exit 53 and the mess file is gone."""
        w = QueueWriter(self.queue, fsync_func=lambda fd: None)
        w.open(RECEIVED)
        os.close(w._messfd)
        e = self.assertRaises(QueueError, w.write, b"more")
        self.assertEqual(e.code, 53)
        self.assertEqual(queue_files(self.queue), [])

    def test_intd_exists(self):
        """An intd file already present: exit 65 and the mess file removed."""
        w = QueueWriter(self.queue, fsync_func=lambda fd: None)
        msgid = w.open(RECEIVED)
        self.queue.intd(msgid).write_bytes(b"stale")
        e = self.assertRaises(QueueError, w.commit, Envelope("a@b", ["c@d"]))
        self.assertEqual(e.code, 65)
        self.assertFalse(self.queue.mess(msgid).exists())
        self.assertFalse(self.queue.todo(msgid).exists())


class MissingQueueTests(SynchronousTestCase):
    def test_no_queue_dir(self):
        """A queue directory that does not exist is exit 62."""
        from pathlib import Path
        from indimail.queue.layout import QueueDir
        w = QueueWriter(QueueDir(Path(tmp_path(self)) / "nope", 7))
        self.assertEqual(self.assertRaises(QueueError, w.open, RECEIVED).code, 62)
