"""The SMTP client protocol: reply parsing, DATA encoding, flow control."""

from twisted.internet import error
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery.smtpclient import DataEncoder, Reply, SMTPClientProtocol, parse_reply


class ReplyTests(SynchronousTestCase):

    def test_single_line(self):
        """A one-line reply keeps its code and text."""
        self.assertEqual(parse_reply(["250 ok"]), Reply(250, "250 ok"))

    def test_multi_line(self):
        """Continuation lines are joined with newlines."""
        self.assertEqual(parse_reply(["250-mx", "250 SIZE 100"]), Reply(250, "250-mx\n250 SIZE 100"))

    def test_low_code_is_400(self):
        """A code below 200 counts as temporary."""
        self.assertEqual(parse_reply(["199 hmm"]).code, 400)

    def test_malformed_is_400(self):
        """A line without space or dash after the code counts as temporary."""
        self.assertEqual(parse_reply(["250"]).code, 400)
        self.assertEqual(parse_reply(["garbage"]).code, 400)


class EncoderTests(SynchronousTestCase):

    def test_crlf_and_dots(self):
        """LF becomes CRLF; lines starting with a dot get another."""
        enc = DataEncoder()
        self.assertEqual(enc.feed(b"a\n.b\n..c\nd.\n"), b"a\r\n..b\r\n...c\r\nd.\r\n")
        self.assertTrue(enc.complete)

    def test_across_chunks(self):
        """Line starts are tracked across chunk boundaries."""
        enc = DataEncoder()
        out = enc.feed(b"ab") + enc.feed(b"c\n") + enc.feed(b".x") + enc.feed(b"\n")
        self.assertEqual(out, b"abc\r\n..x\r\n")

    def test_dot_after_split_mid_line(self):
        """A dot in the middle of a line split across chunks is not stuffed."""
        enc = DataEncoder()
        self.assertEqual(enc.feed(b"a") + enc.feed(b".b\n"), b"a.b\r\n")

    def test_partial_final_line(self):
        """A message not ending in a newline is incomplete."""
        enc = DataEncoder()
        enc.feed(b"a\nb")
        self.assertFalse(enc.complete)

    def test_empty_message(self):
        """An empty message is complete."""
        self.assertTrue(DataEncoder().complete)


class ProtocolTests(SynchronousTestCase):

    def setUp(self):
        self.proto = SMTPClientProtocol()
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_reply_before_waiting(self):
        """A reply that arrives first is queued for the next wait."""
        self.proto.dataReceived(b"220 hi\r\n")
        self.assertEqual(self.successResultOf(self.proto.next_reply()), Reply(220, "220 hi"))

    def test_reply_in_pieces(self):
        """A multi-line reply split over reads fires once, complete."""
        d = self.proto.next_reply()
        self.proto.dataReceived(b"250-a\r")
        self.assertNoResult(d)
        self.proto.dataReceived(b"\n250 b\r\n")
        self.assertEqual(self.successResultOf(d), Reply(250, "250-a\n250 b"))

    def test_command(self):
        """Commands go out with CRLF."""
        self.proto.command("EHLO me")
        self.assertEqual(self.transport.value(), b"EHLO me\r\n")

    def test_lost_connection(self):
        """Waiting on a reply when the connection dies errbacks."""
        d = self.proto.next_reply()
        self.proto.connectionLost(Failure(error.ConnectionLost()))
        self.failureResultOf(d, error.ConnectionLost)
        self.failureResultOf(self.proto.next_reply(), error.ConnectionLost)

    def test_flow_control(self):
        """drained() waits while the transport has paused us."""
        self.assertIs(self.transport.producer, self.proto)
        self.successResultOf(self.proto.drained())
        self.proto.pauseProducing()
        d = self.proto.drained()
        self.assertNoResult(d)
        self.proto.resumeProducing()
        self.successResultOf(d)
