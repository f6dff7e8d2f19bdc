"""LocalDelivery: assign → dot-qmail → Maildir/mbox/program/forward, with
qmail-local's header lines, texts and loop detection."""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.delivery.local import (
    LOOPING, NO_MAILBOX, LocalDelivery, ext_variables, host_variables)
from indimail.queue.errors import QueueError

from .support import (
    MESSAGE, FakeEnqueuer, control, make_home, queue_message, write_dotqmail)

ALICE = "example.com-alice@example.com"


class VariableTests(SynchronousTestCase):

    def test_ext_variables(self):
        """EXT2..EXT4 drop one more dash-separated field each."""
        self.assertEqual(ext_variables("a-b-c"),
                         {"EXT": "a-b-c", "EXT2": "b-c", "EXT3": "c", "EXT4": ""})

    def test_host_variables(self):
        """HOST2..HOST4 drop one more trailing dot field each."""
        self.assertEqual(host_variables("mx.example.co.uk"),
                         {"HOST2": "mx.example.co", "HOST3": "mx.example",
                          "HOST4": "mx"})
        self.assertEqual(host_variables("localhost"),
                         {"HOST2": "localhost", "HOST3": "localhost", "HOST4": "localhost"})


class LocalDeliveryTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home)
        self.enqueuer = FakeEnqueuer()
        self.agent = LocalDelivery(self.home, control(self.home), self.enqueuer,
                                   reactor=reactor, env={"PATH": os.environ.get("PATH", "")})
        self.domain = self.home.domains / "example.com"

    def deliver(self, recipient=ALICE, sender="bob@example.org", qqeh=None):
        return self.agent.deliver(self.queue, self.msgid, sender, recipient, qqeh)

    def maildir_files(self, path):
        new = self.domain / path / "new"
        return [new / name for name in sorted(os.listdir(new))] if new.exists() else []

    async def test_acceptance_maildir(self):
        """.qmail-alice with ./alice/Maildir/ puts the mail in alice/Maildir/new."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        result = await self.deliver()
        self.assertEqual((result.status, result.report), ("success", "did 1+0+0"))
        files = self.maildir_files("alice/Maildir")
        self.assertEqual(len(files), 1)
        self.assertEqual(files[0].read_bytes(),
                         b"Return-Path: <bob@example.org>\n"
                         b"Delivered-To: example.com-alice@example.com\n" + MESSAGE)

    async def test_unknown_recipient(self):
        """No .qmail file and no .qmail-default: qmail-local's permanent text."""
        result = await self.deliver("example.com-nobody@example.com")
        self.assertEqual((result.status, result.report), ("failure", NO_MAILBOX))

    async def test_unknown_user_in_assign(self):
        """A local part users/assign does not know fails the same way."""
        result = await self.deliver("stranger@localhost")
        self.assertEqual((result.status, result.report), ("failure", NO_MAILBOX))

    async def test_default_fallback(self):
        """.qmail-default catches addresses without their own file; DEFAULT set."""
        write_dotqmail(self.home, ".qmail-default", '|echo "$DEFAULT" > default.out\n')
        result = await self.deliver("example.com-Carol@example.com")
        self.assertEqual(result.status, "success")
        self.assertEqual((self.domain / "default.out").read_text(), "Carol\n")

    async def test_ext_default_fallback(self):
        """.qmail-foo-default handles foo-bar before .qmail-default does."""
        write_dotqmail(self.home, ".qmail-foo-default", "./foo/Maildir/\n")
        write_dotqmail(self.home, ".qmail-default", "./other/Maildir/\n")
        result = await self.deliver("example.com-foo-bar@example.com")
        self.assertEqual(result.status, "success")
        self.assertEqual(len(self.maildir_files("foo/Maildir")), 1)
        self.assertEqual(self.maildir_files("other/Maildir"), [])

    async def test_qqeh_after_delivered_to(self):
        """Queue extra headers follow the Delivered-To line."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        await self.deliver(qqeh="X-QHPSI: clean\n")
        data = self.maildir_files("alice/Maildir")[0].read_bytes()
        self.assertTrue(data.startswith(
            b"Return-Path: <bob@example.org>\nDelivered-To: example.com-alice@example.com\n"
            b"X-QHPSI: clean\nFrom: bob@example.org\n"))

    async def test_loop_detected(self):
        """A message that already has our Delivered-To line is a permanent loop."""
        self.queue, self.msgid = queue_message(
            self.home, b"Delivered-To: example.com-alice@example.com\n" + MESSAGE, 77)
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        result = await self.deliver()
        self.assertEqual((result.status, result.report), ("failure", LOOPING))
        self.assertEqual(self.maildir_files("alice/Maildir"), [])

    async def test_delivered_to_in_body_is_no_loop(self):
        """Only header lines count for loop detection."""
        self.queue, self.msgid = queue_message(
            self.home, MESSAGE + b"Delivered-To: example.com-alice@example.com\n", 78)
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        self.assertEqual((await self.deliver()).status, "success")

    async def test_maxdeliveredto(self):
        """control/maxdeliveredto allows that many copies of our line."""
        (self.home.control / "maxdeliveredto").write_text("1\n")
        self.queue, self.msgid = queue_message(
            self.home, b"Delivered-To: example.com-alice@example.com\n" + MESSAGE, 79)
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        self.assertEqual((await self.deliver()).status, "success")

    async def test_mbox(self):
        """A path line appends to an mbox with the From_ line and >From quoting."""
        write_dotqmail(self.home, ".qmail-alice", "./alice.mbox\n")
        result = await self.deliver()
        self.assertEqual(result.status, "success")
        data = (self.domain / "alice.mbox").read_bytes()
        self.assertTrue(data.startswith(b"From bob@example.org "))
        self.assertIn(b"\nReturn-Path: <bob@example.org>\nDelivered-To: "
                      b"example.com-alice@example.com\n", data)
        self.assertIn(b"\n>From the start\n", data)
        self.assertTrue(data.endswith(b"body\n\n"))

    async def test_program_environment(self):
        """Programs get qmail-local's variables and the message on stdin."""
        write_dotqmail(self.home, ".qmail-alice",
                       '|echo "$SENDER|$RECIPIENT|$LOCAL|$HOST|$EXT|$USER|$NEWSENDER" > env.out;'
                       ' printf %s "$DTLINE$RPLINE" >> env.out; cat >> env.out\n')
        result = await self.deliver()
        self.assertEqual((result.status, result.report), ("success", "did 0+0+1"))
        self.assertEqual(
            (self.domain / "env.out").read_bytes(),
            b"bob@example.org|example.com-alice@example.com|example.com-alice|example.com|"
            b"alice|example.com|bob@example.org\n"
            b"Delivered-To: example.com-alice@example.com\nReturn-Path: <bob@example.org>\n"
            + MESSAGE)

    async def test_program_finds_the_home(self):
        """INDIMAIL_HOME names the service's home, so helper commands
        (autoresponder, qmail-inject) queue into the same queue."""
        write_dotqmail(self.home, ".qmail-alice", '|printf %s "$INDIMAIL_HOME" > home.out\n')
        result = await self.deliver()
        self.assertEqual(result.status, "success")
        self.assertEqual((self.domain / "home.out").read_text(), str(self.home.path))

    async def test_program_permanent(self):
        """Exit 100 fails permanently with the program's output as report."""
        write_dotqmail(self.home, ".qmail-alice", "|echo go away; exit 100\n./alice/Maildir/\n")
        result = await self.deliver()
        self.assertEqual((result.status, result.report), ("failure", "go away"))
        self.assertEqual(self.maildir_files("alice/Maildir"), [])

    async def test_program_temporary(self):
        """Other exit codes defer."""
        write_dotqmail(self.home, ".qmail-alice", "|exit 75\n")
        self.assertEqual((await self.deliver()).status, "deferral")

    async def test_program_99_stops(self):
        """Exit 99 succeeds and skips the rest of the file."""
        write_dotqmail(self.home, ".qmail-alice", "|exit 99\n./alice/Maildir/\n")
        result = await self.deliver()
        self.assertEqual(result.status, "success")
        self.assertEqual(self.maildir_files("alice/Maildir"), [])

    async def test_branch_taken(self):
        """``?label cmd`` jumps to ``:label`` when cmd exits 99."""
        write_dotqmail(self.home, ".qmail-alice",
                       "./alice/Maildir/\n?junk exit 99\n./inbox/Maildir/\n:junk\n./junk/Maildir/\n")
        result = await self.deliver()
        self.assertEqual((result.status, result.report), ("success", "did 2+0+1"))
        self.assertEqual(len(self.maildir_files("junk/Maildir")), 1)
        self.assertEqual(self.maildir_files("inbox/Maildir"), [])

    async def test_branch_not_taken(self):
        """When cmd exits 0 the next line runs; a later ``?label`` alone jumps."""
        write_dotqmail(self.home, ".qmail-alice",
                       "./alice/Maildir/\n?junk exit 0\n./inbox/Maildir/\n?end\n"
                       "./junk/Maildir/\n:end\n")
        result = await self.deliver()
        self.assertEqual(result.status, "success")
        self.assertEqual(len(self.maildir_files("inbox/Maildir")), 1)
        self.assertEqual(self.maildir_files("junk/Maildir"), [])

    async def test_forward(self):
        """&addr and bare address lines re-inject the message with our
        Delivered-To line first, invoked as alias, sender unchanged."""
        write_dotqmail(self.home, ".qmail-alice", "&carol@example.org\ndave@example.net\n")
        result = await self.deliver(qqeh="X-QHPSI: clean\n")
        self.assertEqual((result.status, result.report), ("success", "did 0+2+0\nqp 99"))
        [message] = self.enqueuer.finished
        self.assertEqual(message.invoked, "alias")
        self.assertEqual(message.sender, "bob@example.org")
        self.assertEqual(message.recipients, ["carol@example.org", "dave@example.net"])
        self.assertEqual(message.data, b"Delivered-To: example.com-alice@example.com\n"
                                       b"X-QHPSI: clean\n" + MESSAGE)

    async def test_forward_owner_sender(self):
        """With a .qmail-alice-owner file the forward's sender is alice-owner@."""
        write_dotqmail(self.home, ".qmail-alice", "&carol@example.org\n")
        write_dotqmail(self.home, ".qmail-alice-owner", "&admin@example.org\n")
        await self.deliver()
        self.assertEqual(self.enqueuer.finished[0].sender,
                         "example.com-alice-owner@example.com")

    async def test_forward_null_sender_kept(self):
        """A bounce (null sender) is forwarded with the null sender."""
        write_dotqmail(self.home, ".qmail-alice", "&carol@example.org\n")
        write_dotqmail(self.home, ".qmail-alice-owner", "&admin@example.org\n")
        await self.deliver(sender="")
        self.assertEqual(self.enqueuer.finished[0].sender, "")

    async def test_forward_queue_failure(self):
        """A temporary queue error defers with qmail-local's forward text."""
        self.enqueuer.fail = QueueError(53)
        write_dotqmail(self.home, ".qmail-alice", "&carol@example.org\n")
        result = await self.deliver()
        self.assertEqual(result.status, "deferral")
        self.assertEqual(result.report,
                         "Unable to forward message: qq write error or disk full (#4.3.0).")

    async def test_forward_permanent_queue_failure(self):
        """A permanent queue error fails permanently."""
        self.enqueuer.fail = QueueError(31)
        write_dotqmail(self.home, ".qmail-alice", "&carol@example.org\n")
        self.assertEqual((await self.deliver()).status, "failure")

    async def test_forward_only_file(self):
        """An x-bit dot-qmail file may not deliver to files."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n", mode=0o700)
        result = await self.deliver()
        self.assertEqual(result.status, "deferral")
        self.assertIn("has file delivery but has x bit set", result.report)

    async def test_default_delivery_for_user(self):
        """An assign user with empty ext and no .qmail gets defaultdelivery."""
        userhome = self.home.path / "home-joe"
        os.makedirs(userhome)
        os.chmod(userhome, 0o755)
        (self.home.users / "assign").write_text(
            f"=joe:joe:{os.getuid()}:{os.getgid()}:{userhome}:::\n.\n")
        (self.home.control / "defaultdelivery").write_text("./Mailbox\n")
        result = await self.deliver("joe@localhost")
        self.assertEqual(result.status, "success")
        self.assertTrue((userhome / "Mailbox").read_bytes().startswith(b"From bob@example.org "))

    async def test_empty_dotqmail_is_default_delivery(self):
        """An empty .qmail-alice means defaultdelivery (./Maildir/)."""
        write_dotqmail(self.home, ".qmail-alice", "")
        result = await self.deliver()
        self.assertEqual(result.status, "success")
        self.assertEqual(len(self.maildir_files("Maildir")), 1)

    async def test_writable_home(self):
        """A world-writable home directory is refused temporarily."""
        os.chmod(self.domain, 0o777)
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        result = await self.deliver()
        self.assertEqual((result.status, result.report),
                         ("deferral", "Uh-oh: home directory is writable. (#4.7.0)"))

    async def test_missing_message(self):
        """A missing mess file is a temporary failure."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        self.queue.mess(self.msgid).unlink()
        self.assertEqual((await self.deliver()).status, "deferral")

    async def test_null_local_part(self):
        """An empty local part succeeds without delivering (lspawn's <> case)."""
        self.assertEqual((await self.deliver("@example.com")).status, "success")


class RealQueueForwardTests(TestCase):
    """Forwarding through the real Enqueuer into a real queue."""

    def setUp(self):
        from twisted.python.threadpool import ThreadPool

        from indimail.queue.fix import queue_fix
        from indimail.queue.layout import QueueDir
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home)
        self.out = QueueDir(self.home.queue_base / "queue9")
        queue_fix(self.out)
        pool = ThreadPool(minthreads=1, maxthreads=2, name="test-enqueue")
        pool.start()
        self.addCleanup(pool.stop)
        from indimail.queue.enqueue import Enqueuer
        self.enqueuer = Enqueuer(self.home, {"QUEUEDIR": str(self.out.path)},
                                 reactor=reactor, threadpool=pool)
        self.agent = LocalDelivery(self.home, control(self.home), self.enqueuer,
                                   reactor=reactor, env={})

    async def test_forward_lands_in_queue(self):
        """A forward line queues a new message: todo envelope with the new
        recipients, mess with our Delivered-To line before the original."""
        from indimail.queue.envelope import Envelope
        write_dotqmail(self.home, ".qmail-alice", "&carol@example.org\n")
        result = await self.agent.deliver(self.queue, self.msgid, "bob@example.org", ALICE)
        self.assertEqual(result.status, "success", result.report)
        qp = int(result.report.rsplit("qp ", 1)[1])
        envelope = Envelope.from_todo(self.out.todo(qp).read_bytes())
        self.assertEqual((envelope.sender, envelope.recipients),
                         ("bob@example.org", ["carol@example.org"]))
        mess = self.out.mess(qp).read_bytes()
        self.assertTrue(mess.startswith(b"Received: (indimail-mta "))
        self.assertIn(b"invoked by alias", mess.split(b"\n", 1)[0])
        self.assertTrue(mess.endswith(
            b"\nDelivered-To: example.com-alice@example.com\n" + MESSAGE))


class _CountingPool:
    """A thread pool stand-in that runs work inline and counts the trips."""

    started = True

    def __init__(self):
        self.trips = 0

    def callInThreadWithCallback(self, onResult, func, *args, **kw):
        from twisted.python.failure import Failure
        self.trips += 1
        try:
            result = func(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class ThreadTripTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home)
        self.pool = _CountingPool()
        self.agent = LocalDelivery(self.home, control(self.home), FakeEnqueuer(),
                                   reactor=reactor, threadpool=self.pool,
                                   env={"PATH": os.environ.get("PATH", "")})
        self.domain = self.home.domains / "example.com"

    async def test_mailbox_lines_take_one_trip(self):
        """A dot-qmail file of Maildir and mbox lines only is looked up and
        carried out in a single trip to a worker thread, with the usual
        report and copies."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n./alice.mbox\n")
        result = await self.agent.deliver(self.queue, self.msgid, "bob@example.org", ALICE)
        self.assertEqual((result.status, result.report), ("success", "did 2+0+0"))
        self.assertEqual(self.pool.trips, 1)
        self.assertEqual(len(os.listdir(self.domain / "alice" / "Maildir" / "new")), 1)
        self.assertTrue((self.domain / "alice.mbox").read_bytes().startswith(
            b"From bob@example.org "))

    async def test_mailbox_error_in_one_trip(self):
        """A Maildir that cannot be made fails in that single trip with
        qmail-local's text."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")
        (self.domain / "alice").write_bytes(b"not a directory")
        result = await self.agent.deliver(self.queue, self.msgid, "bob@example.org", ALICE)
        self.assertEqual((result.status, result.report),
                         ("deferral", "Unable to chdir to maildir. (#4.2.1)"))
        self.assertEqual(self.pool.trips, 1)

    async def test_program_lines_keep_their_own_path(self):
        """A program line is not run in the lookup's thread trip: it runs as
        a child process after it."""
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n|cat > /dev/null\n")
        result = await self.agent.deliver(self.queue, self.msgid, "bob@example.org", ALICE)
        self.assertEqual((result.status, result.report), ("success", "did 1+0+1"))
        self.assertGreater(self.pool.trips, 1)
