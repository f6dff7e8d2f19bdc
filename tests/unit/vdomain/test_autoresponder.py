"""The autoresponder's rules: who gets no reply, once per sender per
interval, the reply's header and the message file's escapes."""

import io
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.cli.autoresponder import Usage, parse_options, respond
from indimail.config.init import init_home
from indimail.queue.inject import read_header
from indimail.vdomain import autoresponder as A

NOW = 1_700_000_000           # Tue, 14 Nov 2023 22:13:20 UTC
DTLINE = "Delivered-To: example.com-bob@example.com\n"
MAIL = (b"From: Carol <carol@remote.test>\nTo: Bob <bob@example.com>, x@y.z\n"
        b"Cc: ann@remote.test\nSubject: hello\n there\nMessage-ID: <m1@remote.test>\n"
        b"Date: Mon, 13 Nov 2023 10:00:00 +0000\nX-Mailer: Mutt\n\nbody\n")


def original(data=MAIL, dtline=DTLINE):
    header, _first, _ended = read_header(io.BytesIO(data))
    return A.read_original(header, dtline)


class SenderTests(SynchronousTestCase):
    def ignored(self, sender):
        with self.assertRaises(A.Ignore) as caught:
            A.check_sender(sender)
        return str(caught.exception)

    def test_system_bounce_and_list_senders_get_no_reply(self):
        """Empty sender, #@[], MAILER-DAEMON, no host, -request and owner- senders."""
        self.assertEqual(self.ignored(""), "SENDER is empty, mail came from system account")
        self.assertEqual(self.ignored("#@[]"), "SENDER is <#@[]> (double bounce message)")
        self.assertEqual(self.ignored("MAILER-DAEMON@remote.test"), "SENDER was mailer-daemon")
        self.assertEqual(self.ignored("carol"), "SENDER did not contain a hostname")
        self.assertEqual(self.ignored("list-request@lists.test"), "SENDER was owner list")
        self.assertEqual(self.ignored("owner-list@lists.test"), "SENDER was owner list")
        A.check_sender("carol@remote.test")


class HeaderTests(SynchronousTestCase):
    def ignored(self, extra, dtline=DTLINE):
        with self.assertRaises(A.Ignore) as caught:
            original(extra + MAIL, dtline)
        return str(caught.exception)

    def test_lists_bulk_and_automatic_mail_get_no_reply(self):
        """List headers, Precedence junk/bulk/list, Auto-Submitted other than no."""
        self.assertEqual(self.ignored(b"List-Id: <l.lists.test>\n"),
                         "Message appears to be from a mailing list (List-ID header)")
        self.assertIn("X-Mailing-List", self.ignored(b"X-Mailing-List: l@lists.test\n"))
        self.assertEqual(self.ignored(b"Precedence: bulk\n"),
                         "Message has a junk, bulk, or list precedence header")
        self.assertEqual(self.ignored(b"Auto-Submitted: auto-replied\n"),
                         "Message has a Auto-Submitted header as auto-replied")
        self.assertIn("Auto-Submitted", self.ignored(b"Auto-Submitted: auto-generated\n"))
        original(b"Auto-Submitted: no\nPrecedence: first-class\n" + MAIL)

    def test_own_delivered_to_line_is_a_loop(self):
        """A message that already passed this recipient gets no reply."""
        self.assertEqual(self.ignored(b"Delivered-To: example.com-bob@example.com\n"),
                         "Message already has my Delivered-To line")
        original(b"Delivered-To: example.com-ann@example.com\n" + MAIL)

    def test_fields_taken(self):
        """Subject unfolded, first addresses, mailer, Message-ID; defaults without them."""
        got = original()
        self.assertEqual((got.subject, got.message_id, got.mailer, got.from_),
                         ("hello there", "<m1@remote.test>", "Mutt",
                          "Carol <carol@remote.test>"))
        bare = original(b"From: carol@remote.test\n\nx\n")
        self.assertEqual((bare.subject, bare.mailer), ("Your mail", "unknown"))

    def test_recipient_must_be_addressed_unless_lax(self):
        """Bcc'd copies get no reply unless lax; a hidden list counts as addressed."""
        mail = original()
        A.check_message(mail, "bob@example.com", lax=False)
        A.check_message(mail, "BOB@example.com", lax=False)
        with self.assertRaises(A.Ignore):
            A.check_message(mail, "eve@example.com", lax=False)
        A.check_message(mail, "eve@example.com", lax=True)
        hidden = original(b"To: recipient list not shown: ;\nFrom: c@r.test\n\nx\n")
        A.check_message(hidden, "eve@example.com", lax=False)

    def test_spam_gets_no_reply(self):
        """X-Bogosity: Yes, ... is spam (RFC 3834)."""
        with self.assertRaises(A.Ignore):
            A.check_message(original(b"X-Bogosity: Yes, spamicity=0.99\n" + MAIL),
                            "bob@example.com", lax=True)

    def test_recipient_and_lax_from_qmail_local_variables(self):
        """RECIPIENT less HOST-; DTLINE naming the recipient turns lax mode on."""
        self.assertEqual(A.recipient_address("example.com-bob@example.com", "example.com"),
                         "bob@example.com")
        self.assertEqual(A.recipient_address("bob@example.com", "example.com"),
                         "bob@example.com")
        self.assertTrue(A.lax_for_dtline("bob@example.com", DTLINE, "example.com"))
        self.assertFalse(A.lax_for_dtline(
            "bob@example.com", "Delivered-To: example.com-sales@example.com\n", "example.com"))


class HistoryTests(SynchronousTestCase):
    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def test_once_per_sender_per_interval(self):
        """The first message of a sender is answered, the next within the week
        not; another sender is; after the interval the sender is answered again
        and the stale record is gone."""
        options = A.Options()
        first = A.count_history(self.dir, "carol@remote.test", NOW, options, pid=10)
        self.assertEqual(first, f"10.{NOW}.carol@remote.test")
        self.assertIsNone(A.count_history(self.dir, "carol@remote.test", NOW + 60, options))
        self.assertIsNotNone(A.count_history(self.dir, "dave@remote.test", NOW + 60, options,
                                             pid=11))
        later = NOW + A.WEEK + 61
        self.assertIsNotNone(A.count_history(self.dir, "carol@remote.test", later, options,
                                             pid=12))
        self.assertFalse((self.dir / first).exists())

    def test_records_share_an_inode_and_slashes_are_safe(self):
        """New records are hard links to a live one; '/' in a sender becomes ':'."""
        options = A.Options()
        A.count_history(self.dir, "a@x.test", NOW, options, pid=1)
        name = A.count_history(self.dir, "b/../c@x.test", NOW, options, pid=2)
        self.assertEqual(name, f"2.{NOW}.b:..:c@x.test")
        inodes = {os.stat(p).st_ino for p in self.dir.iterdir()}
        self.assertEqual(len(inodes), 1)
        A.count_history(self.dir, "d@x.test", NOW, A.Options(no_links=True), pid=3)
        self.assertEqual(len({os.stat(p).st_ino for p in self.dir.iterdir()}), 2)

    def test_max_replies_and_no_rate_limit(self):
        """-n 2 answers twice within the interval; -t -1 always answers."""
        options = A.Options(max_replies=2)
        self.assertIsNotNone(A.count_history(self.dir, "c@x.test", NOW, options, pid=1))
        self.assertIsNotNone(A.count_history(self.dir, "c@x.test", NOW + 1, options, pid=2))
        self.assertIsNone(A.count_history(self.dir, "c@x.test", NOW + 2, options, pid=3))
        unlimited = A.Options(interval=-1)
        for n in range(3):
            self.assertIsNotNone(A.count_history(self.dir, "c@x.test", NOW + n, unlimited,
                                                 pid=5 + n))


class ReplyTests(SynchronousTestCase):
    def test_reply_header(self):
        """RFC 3834 fields, the recipient as From, the prefixed subject."""
        header = A.reply_header(original(), A.Options(), sender="carol@remote.test",
                                from_line="bob@example.com", now=NOW)
        self.assertEqual(header, "Auto-Submitted: auto-replied\n"
                                 "Date: 14 Nov 2023 22:13:20 -0000\n"
                                 "From: bob@example.com\nTo: carol@remote.test\n"
                                 "In-Reply-To: <m1@remote.test>\n"
                                 "References: <m1@remote.test>\n"
                                 "Subject: Autoreply: Re: hello there\n\n")
        fixed = A.reply_header(original(), A.Options(subject="Away", subject_prefix="",
                                                     content_type="Content-Type: text/html"),
                               sender="c@r", from_line="b@e", now=NOW)
        self.assertIn("Mime-Version: 1.0\nContent-Type: text/html\nSubject: Away\n\n", fixed)

    def test_service_responder_answers_as_bouncefrom(self):
        """SERVICE_RESPONDER names the From; -f sets it otherwise."""
        options = A.Options()
        self.assertEqual(A.from_line(options, "bob@e", {"SERVICE_RESPONDER": "Help Desk"},
                                     "MAILER-DAEMON", "mx.test"),
                         "Help Desk <MAILER-DAEMON@mx.test>")
        self.assertEqual(A.from_line(options, "bob@e", {"SERVICE_RESPONDER": ""}, "M", "h"),
                         "AutoResponse <M@h>")
        self.assertEqual(A.from_line(A.Options(from_addr="x@e"), "bob@e", {}, "M", "h"), "x@e")

    def test_escapes(self):
        """%S %D %d %t %T (first To address) %C %F %M %m %% are replaced; other % stay."""
        text = "%S|%D|%d|%t|%T|%C|%B|%F|%M|%m|100%%|%q"
        self.assertEqual(A.substitute(text, original(), "bob@example.com", NOW),
                         "hello there|Mon, 13 Nov 2023 10:00:00 +0000|"
                         "Tue, 14 Nov 2023 22:13:20 -0000|bob@example.com|"
                         "Bob <bob@example.com>|ann@remote.test||"
                         "Carol <carol@remote.test>|Mutt|<m1@remote.test>|100%|%q")

    def test_validity_period(self):
        """-b: not before the start; -e: not after the end."""
        with self.assertRaises(A.Ignore):
            A.check_period(A.Options(start=NOW + 1), NOW)
        with self.assertRaises(A.Ignore):
            A.check_period(A.Options(end=NOW - 1), NOW)
        A.check_period(A.Options(start=NOW - 1, end=NOW + 1), NOW)


class OptionTests(SynchronousTestCase):
    def test_options(self):
        """upstream's letters; two arguments exactly; bad numbers are usage errors."""
        o = parse_options(["-q", "-c", "-n", "3", "-t", "-1", "-S", "Away", "msg", "dir"])
        self.assertEqual((o.quiet, o.copy, o.max_replies, o.interval, o.subject,
                          o.message_file, o.directory), (True, True, 3, -1, "Away", "msg", "dir"))
        for argv in (["msg"], ["a", "b", "c"], ["-n", "x", "m", "d"], ["-b", "soon", "m", "d"]):
            self.assertRaises(Usage, parse_options, argv)

    def test_content_type_from_a_file(self):
        """-T with a '/' names a file; its last newline is dropped."""
        path = Path(self.mktemp())
        path.write_text("Content-Type: text/plain; charset=utf-8\n")
        self.assertEqual(parse_options(["-T", str(path.absolute()), "m", "d"]).content_type,
                         "Content-Type: text/plain; charset=utf-8")


class RespondTests(TestCase):
    """The command's run (``respond``) on a real home, replying to stdout (-N)."""

    def setUp(self):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root / "home", hostname="mx.test", env={"QUEUE_COUNT": "1"})
        (root / "records").mkdir()
        (root / "msg").write_bytes(b"Away: %S\n")
        self.argv = [str(root / "msg"), str(root / "records")]
        self.env = {"SENDER": "carol@remote.test", "DTLINE": DTLINE, "HOST": "example.com",
                    "RECIPIENT": "example.com-bob@example.com"}

    async def answer(self, *options, env=None, data=MAIL):
        out, err = io.BytesIO(), io.StringIO()
        code = await respond(reactor, parse_options(list(options) + self.argv),
                             self.env if env is None else env, self.home, io.BytesIO(data),
                             out, err)
        return code, out.getvalue(), err.getvalue()

    async def test_reply_on_stdout(self):
        """-N prints the reply and records nothing."""
        code, out, err = await self.answer("-N")
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith(b"Auto-Submitted: auto-replied\n"))
        self.assertTrue(out.endswith(b"Subject: Autoreply: Re: hello there\n\nAway: hello there\n"))
        self.assertEqual(list(Path(self.argv[1]).iterdir()), [])

    async def test_badrcptto_sender_and_quiet(self):
        """A sender in badrcptto gets no reply; -q says nothing about it."""
        (self.home.control / "badrcptto").write_text("carol@remote.test\n")
        code, out, err = await self.answer("-N")
        self.assertEqual((code, out, err),
                         (0, b"", "autoresponder: Ignoring message, SENDER is blacklisted\n"))
        self.assertEqual(await self.answer("-N", "-q"), (0, b"", ""))

    async def test_not_run_by_qmail(self):
        """Without qmail-local's variables, or with a missing message file:
        the usage text and exit 111."""
        code, out, err = await self.answer("-N", env={})
        self.assertEqual(code, 111)
        self.assertIn("autoresponder: SENDER is not set, must be run from qmail.\nUSAGE: ", err)
        self.argv[0] += ".missing"
        code, out, err = await self.answer("-N")
        self.assertEqual(code, 111)
        self.assertIn("Could not open message file.", err)
