"""Enqueuer / IncomingMessage: the Deferred API over a dedicated thread pool."""

import hashlib
import os

from twisted.internet import defer, reactor, task
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.queue.enqueue import Enqueuer
from indimail.queue.envelope import Envelope
from indimail.queue.errors import QueueError

from .helpers import make_home, queue_files


class FakeProducer:
    def __init__(self):
        self.events = []

    def pauseProducing(self):
        self.events.append("pause")

    def resumeProducing(self):
        self.events.append("resume")


class EnqueuerTests(TestCase):
    def setUp(self):
        self.home = make_home(self, count=1)
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name="test-queue")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.synced = []

    def enqueuer(self, env=None, **kw):
        env = {"CONFSPLIT": "7", **(env or {})}
        return Enqueuer(self.home, env, reactor=reactor, threadpool=self.pool,
                        fsync_func=self.synced.append, **kw)

    @property
    def queue(self):
        return self.enqueuer().queues()[0]

    @defer.inlineCallbacks
    def test_enqueue_golden(self):
        """enqueue() fires with the id once todo exists; files are qmail's."""
        enq = self.enqueuer()
        msgid = yield enq.enqueue("a@example.com", ["b@example.org"],
                                  [b"Subject: t\n", b"\nhello\n"])
        q = enq.queues()[0]
        mess = q.mess(msgid).read_bytes()
        self.assertTrue(mess.startswith(b"Received: (indimail-mta %d invoked by uid %d); "
                                        % (os.getpid(), os.getuid())))
        self.assertTrue(mess.endswith(b"\nSubject: t\n\nhello\n"))
        env = Envelope.from_todo(q.todo(msgid).read_bytes())
        self.assertEqual((env.sender, env.recipients, env.pid),
                         ("a@example.com", ["b@example.org"], os.getpid()))
        # mess, intd, and the todo directory (USE_SYNCDIR defaults on)
        self.assertEqual(len(self.synced), 3)

    @defer.inlineCallbacks
    def test_network_received_and_qqeh(self):
        """invoked='network' names the remote ip; QQEH becomes the e record."""
        enq = self.enqueuer({"QQEH": "X-Test: 1"})
        msg = enq.begin(invoked="network", remote_ip="192.0.2.7")
        msg.write(b"body\n")
        msgid = yield msg.finish("", ["x@y"])
        q = enq.queues()[0]
        self.assertIn(b"invoked from network 192.0.2.7); ", q.mess(msgid).read_bytes())
        self.assertTrue(q.todo(msgid).read_bytes().endswith(b"Tx@y\0eX-Test: 1\n\0"))

    @defer.inlineCallbacks
    def test_no_fsync_env(self):
        """USE_FSYNC=0 and USE_SYNCDIR=0 in the env turn fsync off for that message."""
        enq = self.enqueuer({"USE_FSYNC": "0", "USE_SYNCDIR": "0"})
        yield enq.enqueue("a@b", ["c@d"], [b"x\n"])
        self.assertEqual(self.synced, [])

    @defer.inlineCallbacks
    def test_streaming_memory_bounded(self):
        """A 16 MiB message streamed with wait_for_drain never holds more than
        the high-water mark plus one chunk; the file gets every byte in order."""
        high = 256 * 1024
        enq = self.enqueuer(high_water=high)
        msg = enq.begin()
        digest = hashlib.sha256()
        chunk_size = 64 * 1024
        for i in range(256):
            chunk = bytes([i % 251]) * chunk_size
            digest.update(chunk)
            msg.write(chunk)
            if msg.pending_bytes > high:
                yield msg.wait_for_drain()
        msgid = yield msg.finish("a@b", ["c@d"])
        self.assertLessEqual(msg.peak_pending, high + chunk_size)
        data = enq.queues()[0].mess(msgid).read_bytes()
        body = data.split(b"\n", 1)[1]
        self.assertEqual(len(body), 256 * chunk_size)
        self.assertEqual(hashlib.sha256(body).digest(), digest.digest())

    @defer.inlineCallbacks
    def test_producer_paused_and_resumed(self):
        """A registered push producer is paused above high water and resumed
        once the writer drains."""
        enq = self.enqueuer(high_water=1000)
        msg = enq.begin()
        producer = FakeProducer()
        msg.registerProducer(producer, True)
        msg.write(b"x" * 2000)
        self.assertEqual(producer.events, ["pause"])
        yield msg.wait_for_drain()
        self.assertEqual(producer.events, ["pause", "resume"])
        msg.unregisterProducer()
        yield msg.finish("a@b", ["c@d"])

    @defer.inlineCallbacks
    def test_nullqueue(self):
        """NULLQUEUE accepts and discards: id 0, no files."""
        enq = self.enqueuer({"NULLQUEUE": ""})
        msgid = yield enq.enqueue("a@b", ["c@d"], [b"x\n"])
        self.assertEqual(msgid, 0)
        self.assertEqual(queue_files(enq.queues()[0]), [])

    @defer.inlineCallbacks
    def test_extraqueue(self):
        """EXTRAQUEUE adds one recipient, right after the sender."""
        enq = self.enqueuer({"EXTRAQUEUE": "archive@example.com"})
        msgid = yield enq.enqueue("a@b", ["c@d"], [b"x\n"])
        env = Envelope.from_todo(enq.queues()[0].todo(msgid).read_bytes())
        self.assertEqual(env.recipients, ["archive@example.com", "c@d"])

    @defer.inlineCallbacks
    def test_extraqueue_control_file(self):
        """Without EXTRAQUEUE the control file extraqueue is used."""
        (self.home.control / "extraqueue").write_text("one@x\ntwo@x\n")
        enq = self.enqueuer()
        msgid = yield enq.enqueue("a@b", ["c@d"], [b"x\n"])
        env = Envelope.from_todo(enq.queues()[0].todo(msgid).read_bytes())
        self.assertEqual(env.recipients, ["one@x", "two@x", "c@d"])

    @defer.inlineCallbacks
    def test_min_free(self):
        """MIN_FREE larger than the free space: finish errbacks with 53."""
        enq = self.enqueuer({"MIN_FREE": str(1 << 62)})
        msg = enq.begin()
        msg.write(b"x\n")
        failure = yield self.assertFailure(msg.finish("a@b", ["c@d"]), QueueError)
        self.assertEqual(failure.code, 53)
        self.assertEqual(failure.smtp_reply[0], 451)
        self.assertEqual(queue_files(enq.queues()[0]), [])

    @defer.inlineCallbacks
    def test_address_too_long(self):
        """A too-long recipient errbacks with 11 and leaves nothing behind."""
        enq = self.enqueuer()
        d = enq.enqueue("a@b", ["x" * 2000], [b"x\n"])
        failure = yield self.assertFailure(d, QueueError)
        self.assertEqual(failure.code, 11)
        self.assertEqual(queue_files(enq.queues()[0]), [])

    @defer.inlineCallbacks
    def test_small_message_is_one_pool_trip(self):
        """Below open_at nothing touches the disk before finish(); then one
        trip makes, writes and commits the message."""
        enq = self.enqueuer()
        trips = []
        in_thread = enq._in_thread
        enq._in_thread = lambda f, *a: trips.append(f.__name__) or in_thread(f, *a)
        msg = enq.begin()
        msg.write(b"Subject: hi\n\n")
        msg.write(b"small body\n")
        self.assertEqual(trips, [])
        self.assertEqual(queue_files(enq.queues()[0]), [])
        msgid = yield msg.finish("a@b", ["c@d"])
        self.assertEqual(trips, ["_open_write_commit"])
        self.assertTrue(enq.queues()[0].mess(msgid).read_bytes().endswith(b"small body\n"))

    @defer.inlineCallbacks
    def test_trigger_pulled_after_the_callers_callbacks(self):
        """The delivery engine is woken once the caller has had the id (an
        SMTP session sends its 250 from that callback), not before."""
        enq = self.enqueuer()
        fd = os.open(enq.queues()[0].trigger, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, fd)
        msg = enq.begin()
        msg.write(b"Subject: hi\n\nbody\n")
        seen = []

        def on_queued(msgid):
            seen.append(os.read(fd, 10))
            return msgid
        msgid = yield msg.finish("a@b", ["c@d"]).addCallback(on_queued)
        self.assertEqual(seen, [b""])   # no byte yet
        yield task.deferLater(reactor, 0, lambda: None)   # finish() resumed us inside its callback
        self.assertEqual(os.read(fd, 10), b"\0")
        self.assertTrue(enq.queues()[0].todo(msgid).exists())

    @defer.inlineCallbacks
    def test_large_message_file_made_before_finish(self):
        """At open_at bytes the mess file is made and written while DATA goes on."""
        enq = self.enqueuer(high_water=64 * 1024)
        msg = enq.begin()
        msg.write(b"x" * (msg.open_at + 1))
        yield msg.wait_for_drain()
        self.assertIsNotNone(msg.msgid)
        self.assertTrue(enq.queues()[0].mess(msg.msgid).exists())
        self.assertEqual((yield msg.finish("a@b", ["c@d"])), msg.msgid)

    @defer.inlineCallbacks
    def test_abort_before_anything_is_written(self):
        """abort() of a message that never reached the disk settles at once."""
        enq = self.enqueuer()
        msg = enq.begin()
        msg.write(b"partial")
        yield msg.abort()
        self.assertEqual(queue_files(enq.queues()[0]), [])

    @defer.inlineCallbacks
    def test_abort(self):
        """abort() removes the partial message."""
        enq = self.enqueuer(high_water=64 * 1024)
        msg = enq.begin()
        msg.write(b"x" * (msg.open_at + 1))
        yield msg.wait_for_drain()
        self.assertNotEqual(queue_files(enq.queues()[0]), [])
        yield msg.abort()
        self.assertEqual(queue_files(enq.queues()[0]), [])

    @defer.inlineCallbacks
    def test_multi_queue_and_split(self):
        """QUEUE_COUNT spreads messages over queueN; CONFSPLIT sets the split."""
        home = make_home(self, count=2, split=5)
        enq = Enqueuer(home, {"QUEUE_COUNT": "2", "CONFSPLIT": "5"}, reactor=reactor,
                       threadpool=self.pool, fsync_func=lambda fd: None)
        self.assertEqual([q.name for q in enq.queues()], ["queue1", "queue2"])
        ids = yield defer.gatherResults(
            [enq.enqueue("a@b", ["c@d"], [b"x\n"]) for _ in range(12)])
        found = [q.name for q in enq.queues() for i in ids if q.todo(i).exists()]
        self.assertEqual(len(found), 12)
        self.assertEqual(set(found), {"queue1", "queue2"})
        q = enq.queues()[0]
        self.assertEqual(q.split, 5)

    @defer.inlineCallbacks
    def test_concurrent_messages_in_order(self):
        """Interleaved writes of two messages each reach their own file in order."""
        enq = self.enqueuer()
        m1, m2 = enq.begin(), enq.begin()
        for i in range(50):
            m1.write(b"a%d\n" % i)
            m2.write(b"b%d\n" % i)
        id1, id2 = yield defer.gatherResults([m1.finish("a@b", ["c@d"]),
                                              m2.finish("a@b", ["c@d"])])
        q = enq.queues()[0]
        self.assertTrue(q.mess(id1).read_bytes().endswith(
            b"".join(b"a%d\n" % i for i in range(50))))
        self.assertTrue(q.mess(id2).read_bytes().endswith(
            b"".join(b"b%d\n" % i for i in range(50))))


class SynchronousPoolTests(TestCase):
    def test_clock_reactor(self):
        """With SynchronousThreadPool and a Clock the Deferred fires at once,
        so code under test with fake reactors can use a real queue."""
        from twisted.internet.task import Clock
        from indimail.queue.syncpool import SynchronousThreadPool
        home = make_home(self)
        enq = Enqueuer(home, {"CONFSPLIT": "7"}, reactor=Clock(),
                       threadpool=SynchronousThreadPool(), fsync_func=lambda fd: None)
        msg = enq.begin(invoked="bounce")
        msg.write(b"hello\n")
        msgid = self.successResultOf(msg.finish("", ["x@y"]))
        self.assertIn(b"invoked for bounce", enq.queues()[0].mess(msgid).read_bytes())
        failure = self.failureResultOf(enq.enqueue("a@b", ["x" * 1200], [b"x"]), QueueError)
        self.assertEqual(failure.value.code, 11)
