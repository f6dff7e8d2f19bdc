"""The queue commands, run as real subprocesses against a temp queue."""

import os

from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.envelope import Envelope, recipient_bytes

from .helpers import (make_home, queue_of, run, run_qmail_queue, todo_ids)


class QmailQueueTests(SynchronousTestCase):
    def setUp(self):
        self.home = make_home(self)
        self.queue = queue_of(self.home)

    def test_success(self):
        """Exit 0; mess has the Received line + message, todo the envelope."""
        rc = run_qmail_queue(self.home, b"Subject: hi\n\nbody\n",
                             b"Fa@example.com\0Tb@example.org\0Tc@example.net\0\0",
                             QQEH="X-QHPSI: clean")
        self.assertEqual(rc, 0)
        [msgid] = todo_ids(self.queue)
        mess = self.queue.mess(msgid).read_bytes()
        self.assertRegex(mess.decode(), r"^Received: \(indimail-mta \d+ invoked by uid %d\); "
                         r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\nSubject: hi\n\nbody\n$"
                         % os.getuid())
        env = Envelope.from_todo(self.queue.todo(msgid).read_bytes())
        self.assertEqual((env.sender, env.recipients, env.uid, env.extra_headers),
                         ("a@example.com", ["b@example.org", "c@example.net"], os.getuid(),
                          "X-QHPSI: clean\n"))

    def test_address_too_long(self):
        """An address of 1003+ bytes exits 11 and leaves no message behind."""
        rc = run_qmail_queue(self.home, b"x\n", b"Fa@b\0T" + b"x" * 1100 + b"\0\0")
        self.assertEqual(rc, 11)
        self.assertEqual(list((self.queue.path / "mess").glob("*/*")), [])

    def test_mailarchive_adds_archive_recipients(self):
        """control/mailarchive applies to qmail-queue too: a T: rule adds the
        archive address after the message's own recipients."""
        (self.home / "control" / "mailarchive").write_text("T:.*@example.org:archive-%u@arch.example\n")
        rc = run_qmail_queue(self.home, b"Subject: a\n\nb\n",
                             b"Fa@example.com\0Tb@example.org\0Tc@example.net\0\0")
        self.assertEqual(rc, 0)
        [msgid] = todo_ids(self.queue)
        env = Envelope.from_todo(self.queue.todo(msgid).read_bytes())
        self.assertEqual(env.recipients,
                         ["b@example.org", "c@example.net", "archive-b@arch.example"])

    def test_bad_envelope(self):
        """A wrong leading byte exits 79."""
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Xa@b\0\0"), 79)
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Fa@b\0Qc@d\0\0"), 79)
        self.assertEqual(list((self.queue.path / "intd").glob("*/*")), [])

    def test_truncated_envelope(self):
        """EOF before the final NUL is a read error, exit 54."""
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Fa@b\0Tc@d\0"), 54)
        self.assertEqual(todo_ids(self.queue), [])

    def test_extraqueue_and_network(self):
        """EXTRAQUEUE adds a recipient; TCPREMOTEIP shows in Received."""
        rc = run_qmail_queue(self.home, b"x\n", b"Fa@b\0Tc@d\0\0",
                             EXTRAQUEUE="arch@example.com", TCPREMOTEIP="192.0.2.9")
        self.assertEqual(rc, 0)
        [msgid] = todo_ids(self.queue)
        env = Envelope.from_todo(self.queue.todo(msgid).read_bytes())
        self.assertEqual(env.recipients, ["arch@example.com", "c@d"])
        self.assertIn(b"invoked from network 192.0.2.9, by uid", self.queue.mess(msgid).read_bytes())

    def test_nullqueue(self):
        """NULLQUEUE (and qmail-nullqueue) accept and keep nothing."""
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Fa@b\0Tc@d\0\0", NULLQUEUE=""), 0)
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Fa@b\0Tc@d\0\0",
                                         module="qmail_nullqueue"), 0)
        self.assertEqual(todo_ids(self.queue), [])

    def test_defaultqueue_envdir(self):
        """control/defaultqueue/ is read on top of the environment."""
        queue2 = make_home(self)
        d = self.home / "control" / "defaultqueue"
        d.mkdir()
        (d / "QUEUEDIR").write_text(str(queue2 / "queue" / "queue1") + "\n")
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Fa@b\0Tc@d\0\0"), 0)
        self.assertEqual(todo_ids(self.queue), [])
        self.assertEqual(len(todo_ids(queue_of(queue2))), 1)


class InjectTests(SynchronousTestCase):
    def setUp(self):
        self.home = make_home(self)
        self.queue = queue_of(self.home)

    def only_message(self):
        [msgid] = todo_ids(self.queue)
        env = Envelope.from_todo(self.queue.todo(msgid).read_bytes())
        body = self.queue.mess(msgid).read_bytes().split(b"\n", 1)[1]
        return env, body.decode()

    def test_qmail_inject_completes_header(self):
        """Date, Message-ID <time.pid.qmail@host> and From are added;
        recipients come from the header when no arguments are given."""
        msg = b"To: Bob <bob@example.org>\nCc: carol@example.net\nBcc: dave@example.com\n" \
              b"Subject: t\n\nhello\n"
        rc, _out, err = run("qmail_inject", [], self.home, msg,
                            QMAILUSER="alice", QMAILHOST="example.com", QMAILNAME="Alice A")
        self.assertEqual(rc, 0, err)
        env, body = self.only_message()
        self.assertEqual(env.sender, "alice@example.com")
        self.assertEqual(env.recipients, ["bob@example.org", "carol@example.net",
                                          "dave@example.com"])
        self.assertNotIn("Bcc:", body)
        self.assertRegex(body, r"\nDate: \w{3}, \d\d \w{3} \d{4} ")
        self.assertRegex(body, r"\nMessage-ID: <\d+\.\d+\.qmail@example\.com>\n")
        self.assertIn("\nFrom: Alice A <alice@example.com>\n", body)
        self.assertTrue(body.endswith("\n\nhello\n"))

    def test_qmail_inject_args_and_f(self):
        """Arguments replace header recipients; -f sets the envelope sender;
        defaulthost qualifies a bare user; an existing From is kept."""
        (self.home / "control" / "defaulthost").write_text("example.com\n")
        msg = b"From: me@example.com\nTo: x@example.org\n\nbody\n"
        rc, _o, err = run("qmail_inject", ["-f", "bounces@example.com", "postmaster"],
                          self.home, msg, USER="alice")
        self.assertEqual(rc, 0, err)
        env, body = self.only_message()
        self.assertEqual(env.sender, "bounces@example.com")
        self.assertEqual(env.recipients, ["postmaster@example.com"])
        self.assertEqual(body.count("From:"), 1)

    def test_qmail_inject_from_control(self):
        """Without QMAILHOST/MAILHOST the From host is control defaulthost, else me."""
        rc, _o, err = run("qmail_inject", ["x@example.org"], self.home, b"\nbody\n", USER="zed")
        self.assertEqual(rc, 0, err)
        env, body = self.only_message()
        self.assertEqual(env.sender, "zed@mail.example.com")
        self.assertIn("From: zed@mail.example.com\n", body)

    def test_qmail_inject_no_recipients(self):
        """No recipients at all is a permanent error, exit 100."""
        rc, _o, err = run("qmail_inject", [], self.home, b"Subject: x\n\nbody\n")
        self.assertEqual(rc, 100)
        self.assertIn("no recipients", err)

    def test_sendmail_t(self):
        """sendmail -t takes To/Cc/Bcc (plus arguments) and removes Bcc; -f and -F apply."""
        msg = b"To: bob@example.org\nBcc: hidden@example.net\nSubject: s\n\nline\n.\nafter\n"
        rc, _o, err = run("sendmail", ["-t", "-i", "-f", "s@example.com", "-F", "Sam S",
                                       "extra@example.com"], self.home, msg, USER="sam")
        self.assertEqual(rc, 0, err)
        env, body = self.only_message()
        self.assertEqual(env.sender, "s@example.com")
        self.assertEqual(env.recipients, ["bob@example.org", "hidden@example.net",
                                          "extra@example.com"])
        self.assertNotIn("hidden", body)
        self.assertIn("From: Sam S <sam@mail.example.com>\n", body)
        self.assertTrue(body.endswith("\n\nline\n.\nafter\n"))

    def test_sendmail_dot_ends_without_i(self):
        """Without -i/-oi a lone '.' line ends the message; args are the recipients."""
        msg = b"Subject: s\n\nline\n.\nnot this\n"
        rc, _o, err = run("sendmail", ["-oem", "bob@example.org"], self.home, msg)
        self.assertEqual(rc, 0, err)
        env, body = self.only_message()
        self.assertEqual(env.recipients, ["bob@example.org"])
        self.assertTrue(body.endswith("\n\nline\n"))

    def test_sendmail_oi(self):
        """-oi keeps reading past a lone '.'."""
        rc, _o, err = run("sendmail", ["-oi", "bob@example.org"], self.home,
                          b"Subject: s\n\na\n.\nb\n")
        self.assertEqual(rc, 0, err)
        _env, body = self.only_message()
        self.assertTrue(body.endswith("\na\n.\nb\n"))


class QueueFixCommandTests(SynchronousTestCase):
    def test_create_then_idempotent(self):
        """queue-fix creates a queue (exit 1: changes made); a second run
        changes nothing (exit 0, only 'queue-fix finished...')."""
        home = make_home(self, count=0)
        qdir = home / "queue" / "queue9"
        rc, out, err = run("queue_fix", ["-v", "-s", "5", str(qdir)], home)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"Creating directory [{qdir}/mess/4]", out)
        self.assertIn(f"Creating fifo [{qdir}/lock/trigger]", out)
        self.assertTrue((qdir / "todo" / "4").is_dir())
        rc, out, err = run("queue_fix", ["-v", "-s", "5", str(qdir)], home)
        self.assertEqual((rc, out), (0, "queue-fix finished...\n"))

    def test_dry_run(self):
        """-N reports but creates nothing."""
        home = make_home(self, count=0)
        qdir = home / "queue" / "queue9"
        rc, out, _err = run("queue_fix", ["-N", "-v", str(qdir)], home)
        self.assertEqual(rc, 1)
        self.assertFalse(qdir.exists())

    def test_usage(self):
        """No queue directory: usage, exit 100."""
        rc, _out, err = run("queue_fix", [], make_home(self, count=0))
        self.assertEqual(rc, 100)
        self.assertIn("usage: queue-fix", err)


class ReportTests(SynchronousTestCase):
    def setUp(self):
        self.home = make_home(self, count=2)

    def preprocessed(self, n, msgid_sender="a@example.com", local=(), remote=(), done=()):
        """Make a preprocessed message the way todo-proc leaves it."""
        queue = queue_of(self.home, n)
        self.assertEqual(run_qmail_queue(self.home, b"Subject: x\n\nbody\n",
                                         b"F" + msgid_sender.encode() + b"\0Tz@z\0\0",
                                         QUEUEDIR=str(queue.path)), 0)
        [msgid] = todo_ids(queue)
        env = Envelope.from_todo(queue.todo(msgid).read_bytes())
        queue.info(msgid).write_bytes(env.info_bytes())
        os.utime(queue.info(msgid), (1700000000, 1700000000))
        if local:
            queue.local(msgid).write_bytes(recipient_bytes(list(local)))
        if remote:
            data = bytearray(recipient_bytes(list(remote)))
            if done:
                data[0:1] = b"D"
            queue.remote(msgid).write_bytes(bytes(data))
        os.unlink(queue.todo(msgid))
        os.unlink(queue.intd(msgid))
        return queue, msgid

    def test_qread_format(self):
        """qmail-qread prints upstream's stats and recipient lines per queue."""
        q1, id1 = self.preprocessed(1, local=["l@example.com"],
                                    remote=["r1@example.org", "r2@example.org"], done=True)
        size = os.stat(q1.mess(id1)).st_size
        rc, out, err = run("qmail_qread", [], self.home)
        self.assertEqual(rc, 0, err)
        expected = (f"processing queue {q1.path}\n"
                    f"14 Nov 2023 22:13:20 GMT  {id1 % 7}/#{id1}  {size}  <a@example.com> \n"
                    "\tlocal\tl@example.com\n"
                    "  done\tremote\tr1@example.org\n"
                    "\tremote\tr2@example.org\n"
                    "\n"
                    f"processing queue {queue_of(self.home, 2).path}\n"
                    "\n")
        self.assertEqual(out, expected)

    def test_qread_counts_and_todo(self):
        """-c prints per-queue and Total counts; -a includes todo messages."""
        self.preprocessed(1, remote=["r@example.org"])
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Fs@x\0Tt@example.com\0\0",
                                         QUEUEDIR=str(queue_of(self.home, 2).path)), 0)
        rc, out, _err = run("qmail_qread", ["-a", "-c"], self.home)
        self.assertEqual(rc, 0)
        self.assertIn("\ttodo\tt@example.com\n", out)
        self.assertIn("Total Messages in remote queue: 1\n", out)
        self.assertIn("Total Messages in todo   queue: 1\n", out)
        self.assertIn("Total Messages in bounce queue: 0\n", out)

    def test_qstat(self):
        """qmail-qstat counts mess and todo files per queue and in total."""
        self.preprocessed(1, remote=["r@example.org"])
        self.assertEqual(run_qmail_queue(self.home, b"x\n", b"Fs@x\0Tt@x\0\0",
                                         QUEUEDIR=str(queue_of(self.home, 2).path)), 0)
        rc, out, _err = run("qmail_qstat", [], self.home, QUEUE_COUNT="2")
        self.assertEqual(rc, 0)
        self.assertEqual(out, f"processing queue {queue_of(self.home, 1).path}\n"
                              "messages in queue: 1\n"
                              "messages in queue but not yet preprocessed: 0\n\n"
                              f"processing queue {queue_of(self.home, 2).path}\n"
                              "messages in queue: 1\n"
                              "messages in queue but not yet preprocessed: 1\n\n"
                              "Total messages in queue: 2\n"
                              "Total messages in queue but not yet preprocessed: 1\n")
        rc, out, _err = run("qmail_qstat", [], self.home,
                            QUEUEDIR=str(queue_of(self.home, 2).path))
        self.assertEqual(out, "messages in queue: 1\n"
                              "messages in queue but not yet preprocessed: 1\n")
