"""envheaders: header fields copied into the h record while streaming."""

from pathlib import Path

from twisted.internet import defer, reactor
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.queue.enqueue import Enqueuer, QueueWriter
from indimail.queue.envelope import Envelope
from indimail.queue.envheaders import HeaderCollector, load_envheaders

from .helpers import make_home, make_queue, tmp_path

MESSAGE = (b"Subject: s\nX-Spam: yes\n  folded\nX-Other: 1\nx-spam: again\n"
           b"\nX-Spam: in body\n")


class CollectorTests(SynchronousTestCase):
    def test_any_chunking(self):
        """Matching fields (with continuations) are found however the bytes
        are split, and nothing after the header is looked at."""
        for size in (1, 3, 7, len(MESSAGE)):
            c = HeaderCollector(["X-Spam"])
            for i in range(0, len(MESSAGE), size):
                c.feed(MESSAGE[i:i + size])
            self.assertEqual(c.collected, "X-Spam: yes\n  folded\nx-spam: again\n")

    def test_nothing(self):
        """No match: None (no h record)."""
        c = HeaderCollector(["X-None"])
        c.feed(MESSAGE)
        self.assertIsNone(c.collected)

    def test_load(self):
        """Names come from control envheaders (or the file ENVHEADERS names),
        without upstream's ':len' suffix."""
        d = Path(tmp_path(self))
        d.mkdir()
        (d / "envheaders").write_text("X-Spam:20\n# c\nList-Id\n")
        (d / "other").write_text("X-Other\n")
        self.assertEqual(load_envheaders({}, d), ["x-spam", "list-id"])
        self.assertEqual(load_envheaders({"ENVHEADERS": "other"}, d), ["x-other"])
        self.assertEqual(load_envheaders({}, d / "missing"), [])


class WriterTests(SynchronousTestCase):
    def test_h_record(self):
        """The writer puts the collected fields in the h record, after e;
        the Received line itself is not collected."""
        queue = make_queue(self)
        w = QueueWriter(queue, fsync=False, uid=1, pid=2, envheaders=["X-Spam", "Received"])
        msgid = w.open(b"Received: (indimail-mta 2 invoked by uid 1); x\n")
        w.write(MESSAGE)
        w.commit(Envelope("a@b", ["c@d"], extra_headers="X-Q: 1\n"))
        self.assertEqual(queue.todo(msgid).read_bytes(),
                         b"u1\0p2\0Fa@b\0Tc@d\0eX-Q: 1\n\0"
                         b"hX-Spam: yes\n  folded\nx-spam: again\n\0")


class EnqueuerEnvheadersTests(TestCase):
    @defer.inlineCallbacks
    def test_control_envheaders(self):
        """The Enqueuer reads control envheaders (off the reactor thread)."""
        home = make_home(self)
        (home.control / "envheaders").write_text("X-Spam\n")
        pool = ThreadPool(1, 2)
        pool.start()
        self.addCleanup(pool.stop)
        enq = Enqueuer(home, {"CONFSPLIT": "7"}, reactor=reactor, threadpool=pool,
                       fsync_func=lambda fd: None)
        msgid = yield enq.enqueue("a@b", ["c@d"], [MESSAGE[:10], MESSAGE[10:]])
        env = Envelope.from_todo(enq.queues()[0].todo(msgid).read_bytes())
        self.assertEqual(env.env_headers, "X-Spam: yes\n  folded\nx-spam: again\n")
