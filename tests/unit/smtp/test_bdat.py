"""CHUNKING/BDAT (RFC 3030) on a StringTransport with a Clock and a fake sink."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from indimail.plugins.api import ORDER_FIRST, deny
from indimail.smtp.bdat import BdatDecoder, parse_bdat
from indimail.smtp.testing import FakeSink

from .support import START, Harness

QUEUED = f"250 ok {int(START)} qp 4242"
CALLS: list[str] = []


class Stages:
    """Records the data and queue hooks; refuses where the env says."""

    name = "stages"
    order = ORDER_FIRST

    def __init__(self, setup):
        pass

    def hook_data(self, ctx):
        CALLS.append("data")
        if ctx.env.get("STAGES_DATA") == "deny":
            return deny("no data today", 554)
        return None

    def hook_queue(self, ctx):
        CALLS.append(f"queue:{ctx.transaction.size}")
        if ctx.env.get("STAGES_QUEUE") == "deny":
            return deny("no queue today", 554)
        return None


def harness(testcase, env=None, **settings) -> Harness:
    h = Harness(testcase, env=env, **settings)
    h.send("EHLO client.example.net\r\n")
    h.output()
    return h


def envelope(h: Harness, rcpt="<b@example.com>") -> None:
    h.send(f"MAIL FROM:<a@example.net>\r\nRCPT TO:{rcpt}\r\n")
    assert h.codes() == [250, 250]


def body_of(message) -> bytes:
    """The stored message without the smtpd Received header (two lines)."""
    return message.data.split(b"\n", 2)[2]


class Parsing(SynchronousTestCase):

    def test_arguments(self):
        """``BDAT <digits> [LAST]`` (LAST in any case); anything else is a syntax error."""
        self.assertEqual((parse_bdat("10").size, parse_bdat("10").last), (10, False))
        self.assertTrue(parse_bdat("0 last").last)
        for bad in ("", "x", "-1", "10 FIRST", "10 LAST x", "1e3", "٣"):
            self.assertIsNone(parse_bdat(bad), bad)

    def test_decoder_crlf_across_chunks(self):
        """CRLF becomes LF even when a chunk ends between CR and LF; a bare CR stays."""
        d = BdatDecoder()
        out = d.feed_chunk(b"a\r") + d.feed_chunk(b"\nb\rc\r") + d.finish()
        self.assertEqual(out, b"a\nb\rc\r")
        self.assertEqual(d.size, len(out))


class Chunking(SynchronousTestCase):

    def test_advertised(self):
        """EHLO offers CHUNKING unless DISABLE_CHUNKING is set; then BDAT is unknown."""
        h = Harness(self)
        h.send("EHLO x\r\n")
        self.assertIn("250-CHUNKING", h.replies())
        h = Harness(self, chunking=False)
        h.send("EHLO x\r\nBDAT 0 LAST\r\n")
        replies = h.replies()
        self.assertNotIn("250-CHUNKING", replies)
        self.assertEqual(replies[-1], "502 command BDAT 0 LAST not recognized (#5.5.2)")

    def test_single_last_chunk(self):
        """``BDAT n LAST``: n octets, then the message is queued: ``250 ok <time> qp <id>``."""
        h = harness(self)
        envelope(h)
        data = b"Subject: hi\r\n\r\nhello\r\n"
        h.send(b"BDAT %d LAST\r\n" % len(data) + data)
        self.assertEqual(h.replies(), [QUEUED])
        [message] = h.sink.messages
        self.assertEqual(message.finished, ("a@example.net", ["b@example.com"]))
        self.assertTrue(message.data.startswith(b"Received: indimail-mta smtpd 4711 "))
        self.assertEqual(body_of(message), b"Subject: hi\n\nhello\n")

    def test_several_chunks(self):
        """Each chunk but the last is answered ``250 ok <n> octets received``;
        the message is the chunks joined, CRLF split between chunks included."""
        h = harness(self)
        envelope(h)
        h.send(b"BDAT 13\r\nSubject: x\r\n\r")
        self.assertEqual(h.replies(), ["250 ok 13 octets received"])
        h.send(b"BDAT 6\r\n\nbody\r")
        self.assertEqual(h.replies(), ["250 ok 6 octets received"])
        h.send(b"BDAT 0 LAST\r\n")
        self.assertEqual(h.replies(), [QUEUED])
        self.assertEqual(body_of(h.sink.messages[0]), b"Subject: x\n\nbody\r")

    def test_binary_safe(self):
        """The count is of octets: dots, NULs, 8-bit bytes and SMTP commands
        inside a chunk are message data, never commands or an end of data."""
        h = harness(self)
        envelope(h)
        data = b"X: \x00\xff\r\n\r\n.\r\nMAIL FROM:<evil@example.net>\r\n.\r\nQUIT\r\n"
        h.send(b"BDAT %d LAST\r\n" % len(data) + data + b"NOOP\r\n")
        self.assertEqual(h.replies(), [QUEUED, "250 ok"])
        self.assertFalse(h.closed)
        self.assertEqual(len(h.sink.messages), 1)
        self.assertEqual(body_of(h.sink.messages[0]),
                         b"X: \x00\xff\n\n.\nMAIL FROM:<evil@example.net>\n.\nQUIT\n")

    def test_pipelined(self):
        """MAIL, RCPT, several BDATs and QUIT in one packet: replies in order."""
        h = harness(self)
        h.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
               b"BDAT 5\r\nhelloBDAT 8 LAST\r\n world\r\nQUIT\r\n")
        self.assertEqual(h.replies(), ["250 ok", "250 ok", "250 ok 5 octets received",
                                       QUEUED, "221 mx.example.com closing connection"])
        self.assertEqual(body_of(h.sink.messages[0]), b"hello world\n")

    def test_byte_at_a_time(self):
        """A chunk arriving one byte per packet gives the same message."""
        h = harness(self)
        envelope(h)
        data = b"BDAT 9 LAST\r\nab\r\ncd\r\n.NOOP\r\n"
        for i in range(len(data)):
            h.send(data[i:i + 1])
        self.assertEqual(h.replies(), [QUEUED, "250 ok"])
        self.assertEqual(body_of(h.sink.messages[0]), b"ab\ncd\n.")

    def test_streamed_not_buffered(self):
        """Chunk bytes reach the queue as they arrive, before the chunk is complete."""
        h = harness(self)
        envelope(h)
        h.send(b"BDAT 1000000 LAST\r\n" + b"x" * 4096)
        self.assertEqual(h.replies(), [])
        self.assertEqual(body_of(h.sink.messages[0]), b"x" * 4096)
        self.assertEqual(len(h.proto._buffer), 0)

    def test_back_pressure(self):
        """Reading pauses while the queue is behind, as for DATA."""
        sink = FakeSink(high_water=1000)
        sink.hold_writes = True
        h = Harness(self, sink=sink)
        h.send("EHLO x\r\n")
        h.output()
        envelope(h)
        h.send(b"BDAT 5000 LAST\r\n" + b"y" * 2000)
        self.assertEqual(h.transport.producerState, "paused")
        h.sink.messages[0].drain()
        self.assertEqual(h.transport.producerState, "producing")

    def test_two_messages(self):
        """After LAST the session takes a new transaction, by BDAT or DATA."""
        h = harness(self)
        envelope(h)
        h.send(b"BDAT 3 LAST\r\none")
        self.assertEqual(h.replies(), [QUEUED])
        envelope(h)
        h.send(b"DATA\r\ntwo\r\n.\r\n")
        self.assertEqual(h.replies(), ["354 go ahead", QUEUED])
        self.assertEqual([body_of(m) for m in h.sink.messages], [b"one", b"two\n"])


class Sequence(SynchronousTestCase):

    def test_without_mail_or_rcpt(self):
        """BDAT before MAIL or RCPT: 503 after its octets were read and thrown away."""
        h = harness(self)
        h.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n")
        self.assertEqual(h.replies(), ["503 MAIL first (#5.5.1)", "250 ok"])
        h.send(b"MAIL FROM:<a@example.net>\r\nBDAT 4 LAST\r\nRSETNOOP\r\n")
        self.assertEqual(h.replies(), ["250 ok", "503 RCPT first (#5.5.1)", "250 ok"])
        self.assertFalse(h.closed)
        self.assertEqual(h.sink.messages, [])

    def test_data_mail_rcpt_between_chunks(self):
        """Between chunks DATA, MAIL and RCPT are out of sequence; the message
        goes on and LAST still queues it."""
        h = harness(self)
        envelope(h)
        h.send(b"BDAT 2\r\nabDATA\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<c@example.com>\r\n"
               b"NOOP\r\nBDAT 2 LAST\r\ncd")
        self.assertEqual(h.replies(), ["250 ok 2 octets received",
                                       "503 bad sequence of commands (#5.5.1)",
                                       "503 bad sequence of commands (#5.5.1)",
                                       "503 bad sequence of commands (#5.5.1)",
                                       "250 ok", QUEUED])
        self.assertEqual(h.sink.messages[0].finished, ("a@example.net", ["b@example.com"]))
        self.assertEqual(body_of(h.sink.messages[0]), b"abcd")

    def test_rset_abandons(self):
        """RSET between chunks throws the message away; a later BDAT needs MAIL."""
        h = harness(self)
        envelope(h)
        h.send(b"BDAT 2\r\nabRSET\r\nBDAT 2 LAST\r\ncd")
        self.assertEqual(h.replies(), ["250 ok 2 octets received", "250 flushed",
                                       "503 MAIL first (#5.5.1)"])
        self.assertTrue(h.sink.messages[0].aborted)
        self.assertIsNone(h.sink.messages[0].finished)

    def test_ehlo_abandons(self):
        """EHLO between chunks also ends the transaction and its message."""
        h = harness(self)
        envelope(h)
        h.send(b"BDAT 2\r\nabEHLO x\r\n")
        self.assertTrue(h.sink.messages[0].aborted)

    def test_syntax_error_closes(self):
        """A BDAT whose size cannot be read: 501 and the connection closes
        (its octets would otherwise be taken for commands)."""
        for arg in ("", " x", " 5 FIRST"):
            h = harness(self)
            envelope(h)
            h.send(f"BDAT{arg}\r\nRSET\r\n")
            self.assertEqual(h.replies(), ["501 syntax error in BDAT chunk size (#5.5.4)"])
            self.assertTrue(h.closed)

    def test_lost_connection_aborts(self):
        """A connection lost inside a chunk or between chunks aborts the message."""
        for data in (b"BDAT 10\r\nabc", b"BDAT 3\r\nabc"):
            h = harness(self)
            envelope(h)
            h.send(data)
            h.proto.connectionLost(None)
            self.assertTrue(h.sink.messages[0].aborted)

    def test_timeout_aborts(self):
        """A client silent inside a chunk times out (451) and the message is aborted."""
        h = harness(self, timeout=60)
        envelope(h)
        h.send(b"BDAT 10\r\nabc")
        h.clock.advance(61)
        self.assertEqual(h.replies(), ["451 Sorry, I reached a timeout reading from client "
                                       "(#4.4.2)"])
        self.assertTrue(h.sink.messages[0].aborted)


class Limits(SynchronousTestCase):

    def test_databytes(self):
        """Over DATABYTES: the message is dropped at once (nothing more is
        stored), the chunks are still read, and LAST is answered 552."""
        h = harness(self, databytes=10)
        envelope(h)
        h.send(b"BDAT 8\r\n12345678")
        self.assertEqual(h.replies(), ["250 ok 8 octets received"])
        h.send(b"BDAT 8\r\n12345678")
        self.assertTrue(h.sink.messages[0].aborted)
        h.send(b"BDAT 4 LAST\r\nabcdNOOP\r\n")
        self.assertEqual(h.replies(), [
            "250 ok 8 octets received",
            "552 sorry, that message size exceeds my databytes limit (#5.3.4)", "250 ok"])
        self.assertIsNone(h.sink.messages[0].finished)

    def test_databytes_exact(self):
        """A message of exactly DATABYTES octets (after CRLF → LF) is queued."""
        h = harness(self, databytes=7)
        envelope(h)
        h.send(b"BDAT 9 LAST\r\nabc\r\nde\r\n")
        self.assertEqual(h.replies(), [QUEUED])

    def test_hops(self):
        """MAXHOPS Received/Delivered header lines in a BDAT message: 554."""
        h = harness(self, maxhops=3)
        envelope(h)
        data = b"Received: a\r\nDelivered-To: b\r\nReceived: c\r\n\r\nbody\r\n"
        h.send(b"BDAT %d LAST\r\n" % len(data) + data)
        self.assertEqual(h.replies(), ["554 too many hops, this message is looping (#5.4.6)"])
        self.assertTrue(h.sink.messages[0].aborted)


class Hooks(SynchronousTestCase):

    def setUp(self):
        CALLS.clear()

    def env(self, **more):
        return {"PLUGIN0": f"{__name__}.Stages", **more}

    def test_data_hook_at_first_chunk_queue_hook_after_last(self):
        """The data hook runs once, at the first BDAT; the queue hook after LAST."""
        h = harness(self, env=self.env())
        envelope(h)
        h.send(b"BDAT 2\r\nab")
        self.assertEqual(CALLS, ["data"])
        h.send(b"BDAT 2\r\ncd")
        self.assertEqual(CALLS, ["data"])
        h.send(b"BDAT 1 LAST\r\ne")
        self.assertEqual(CALLS, ["data", "queue:5"])
        self.assertEqual(h.replies()[-1], QUEUED)

    def test_data_hook_refusal(self):
        """A data hook refusal answers the first BDAT after its octets; the
        transaction is over, so later chunks get 503 MAIL first."""
        h = harness(self, env=self.env(STAGES_DATA="deny"))
        envelope(h)
        h.send(b"BDAT 6\r\nQUIT\r\nBDAT 2 LAST\r\nabNOOP\r\n")
        self.assertEqual(h.replies(), ["554 no data today", "503 MAIL first (#5.5.1)",
                                       "250 ok"])
        self.assertEqual(h.sink.messages, [])

    def test_queue_hook_refusal(self):
        """A queue hook refusal answers LAST and the message is aborted."""
        h = harness(self, env=self.env(STAGES_QUEUE="deny"))
        envelope(h)
        h.send(b"BDAT 2 LAST\r\nab")
        self.assertEqual(h.replies(), ["554 no queue today"])
        self.assertTrue(h.sink.messages[0].aborted)

    def test_queue_failure(self):
        """A sink that cannot begin a message: 451 after the chunk was read."""
        h = harness(self, sink=FakeSink(fail_begin=OSError("disk")))
        envelope(h)
        h.send(b"BDAT 4 LAST\r\nQUITNOOP\r\n")
        self.assertEqual(h.replies(), ["451 Sorry, I got a temporary queue failure (#4.3.0)",
                                       "250 ok"])
        self.flushLoggedErrors(OSError)
