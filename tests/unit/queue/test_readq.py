"""Queue reports: qmail-qread's lines and the queues walked."""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir
from indimail.queue.envelope import Envelope
from indimail.queue.readq import Entry, date822, qstat, read_queue, read_todo, report_queues

from .helpers import tmp_path


class ReadqTests(SynchronousTestCase):
    def test_date822(self):
        """qmail's date822fmt without the zone: day not zero-padded, GMT."""
        self.assertEqual(date822(1700000000), "14 Nov 2023 22:13:20")
        self.assertEqual(date822(0), "1 Jan 1970 00:00:00")

    def test_entry_lines(self):
        """Stats line, then '  done' prefixed or plain recipient lines; a
        bouncing message says so; unprintable bytes become '_'."""
        e = Entry(160, 160 % 151, 0, 42, "a\x01b@x", True,
                  [("local", "l@x", False), ("remote", "r@y", True)])
        self.assertEqual(e.lines(), ["1 Jan 1970 00:00:00 GMT  9/#160  42  <a_b@x>  bouncing",
                                     "\tlocal\tl@x", "  done\tremote\tr@y"])
        self.assertEqual(Entry(1, 1, 0, 1, "s").lines(), [])

    def test_report_queues(self):
        """QUEUEDIR alone, else queueN from QUEUE_START until one is missing,
        plus existing extra queues."""
        base = Path(tmp_path(self))
        for name in ("queue1", "queue2", "queue4", "slowq"):
            (base / name).mkdir(parents=True)
        names = [q.name for q in report_queues({}, base)]
        self.assertEqual(names, ["queue1", "queue2", "slowq"])
        self.assertEqual([q.name for q in report_queues({"QUEUE_COUNT": "1"}, base)],
                         ["queue1", "slowq"])
        self.assertEqual([q.path for q in report_queues({"QUEUEDIR": "/x/q"}, base)],
                         [Path("/x/q")])

    def test_qstat_counts(self):
        """qstat counts files below mess/* and todo/*."""
        q = QueueDir(Path(tmp_path(self)) / "queue1", 3)
        queue_fix(q)
        q.mess(5).write_bytes(b"x")
        q.mess(6).write_bytes(b"x")
        q.todo(6).write_bytes(b"x")
        self.assertEqual(qstat(q), (2, 1))

    def test_unreadable_entries_are_warned_about_and_skipped(self):
        """A message whose mess file is gone or whose info/todo file does not
        parse gets qmail-qread's warning; the readable ones are reported."""
        q = QueueDir(Path(tmp_path(self)) / "queue1", 3)
        queue_fix(q)
        good = Envelope("s@x", ["r@y"])
        for msgid in (5, 6, 7):
            q.mess(msgid).write_bytes(b"body")
        q.info(5).write_bytes(good.info_bytes())
        q.local(5).write_bytes(b"Tr@y\0")
        q.info(6).write_bytes(b"Xbroken\0")
        q.todo(7).write_bytes(good.todo_bytes())
        q.todo(8).write_bytes(good.todo_bytes())          # no mess file
        warnings = []
        entries = list(read_queue(q, warn=warnings.append))
        self.assertEqual([(e.msgid, e.size, e.sender, e.recipients) for e in entries],
                         [(5, 4, "s@x", [("local", "r@y", False)])])
        todo = list(read_todo(q, warn=warnings.append))
        self.assertEqual([(e.msgid, e.sender, e.recipients) for e in todo],
                         [(7, "s@x", [("todo", "r@y", False)])])
        self.assertEqual(len(warnings), 2)
        self.assertTrue(warnings[0].startswith("qmail-qread: warn: trouble with #6: "))
        self.assertIn("unknown info record", warnings[0])
        self.assertTrue(warnings[1].startswith("qmail-qread: warn: trouble with #8: "))
