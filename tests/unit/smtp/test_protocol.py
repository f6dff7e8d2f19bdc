"""The SMTP server protocol on a StringTransport, a Clock and a fake sink."""

from __future__ import annotations

import os

import cdblib
from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.errors import QueueError
from indimail.smtp.testing import FakeSink

from .support import REMOTE_IP, START, Harness


class GreetingAndSimpleCommands(SynchronousTestCase):

    def test_greeting(self):
        """The banner is upstream's: greeting, (NO UCE) ESMTP IndiMail, version, date."""
        h = Harness(self)
        self.assertEqual(len(h.greeting), 1)
        self.assertRegex(h.greeting[0],
                         r"^220 mx\.example\.com \(NO UCE\) ESMTP IndiMail \S+ "
                         r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")

    def test_greeting_without_extra(self):
        """DISABLE_EXTRA_GREET leaves just ``220 <greeting>``."""
        h = Harness(self, extra_greet=False)
        self.assertEqual(h.greeting, ["220 mx.example.com"])

    def test_helo(self):
        """HELO answers ``250 <greeting>``; without argument the client's IP is added."""
        h = Harness(self)
        h.send("HELO client.example.net\r\n")
        self.assertEqual(h.replies(), ["250 mx.example.com"])
        h.send("HELO\r\n")
        self.assertEqual(h.replies(), [f"250 mx.example.com [{REMOTE_IP}]"])

    def test_ehlo_keywords(self):
        """EHLO advertises PIPELINING, 8BITMIME, SIZE <databytes>, CHUNKING and HELP."""
        h = Harness(self, databytes=10000000)
        h.send("EHLO client.example.net\r\n")
        self.assertEqual(h.replies(), ["250-mx.example.com", "250-PIPELINING", "250-8BITMIME",
                                       "250-SIZE 10000000", "250-CHUNKING", "250 HELP"])

    def test_ehlo_size_unlimited(self):
        """With databytes 0 (unlimited) EHLO advertises SIZE without a number."""
        h = Harness(self, databytes=0)
        h.send("ehlo x\r\n")
        self.assertIn("250-SIZE", h.replies())

    def test_noop_rset_vrfy_help(self):
        """NOOP → 250 ok, RSET → 250 flushed, VRFY → 252, HELP → 214 lines."""
        h = Harness(self)
        h.send("NOOP\r\nRSET\r\nVRFY postmaster\r\nHELP\r\n")
        replies = h.replies()
        self.assertEqual(replies[0], "250 ok")
        self.assertEqual(replies[1], "250 flushed")
        self.assertEqual(replies[2], "252 Cannot VRFY user, but will accept message and "
                                     "attempt delivery (#2.7.0)")
        self.assertTrue(replies[3].startswith("214-This is IndiMail SMTP Version"))
        self.assertEqual(replies[-1], "214 HELO EHLO RSET NOOP MAIL RCPT DATA VRFY HELP QUIT")

    def test_immediate_replies_make_no_deferred(self):
        """A command answered at once (or refused at once) is replied to
        without a Deferred per command: the pipelined commands are answered
        in order."""
        from indimail.smtp import protocol

        def no_deferreds(*args, **kwargs):
            raise AssertionError("maybeDeferred used")
        self.patch(protocol.defer, "maybeDeferred", no_deferreds)
        h = Harness(self)
        h.send("NOOP\r\nNOOP x\r\nRSET\r\nXYZZY\r\n")
        self.assertEqual(h.codes(), [250, 501, 250, 502])

    def test_noop_and_rset_refuse_arguments(self):
        """NOOP/RSET/DATA with an argument: 501 invalid parameter syntax (upstream)."""
        h = Harness(self)
        h.send("NOOP x\r\nRSET y\r\nDATA z\r\n")
        self.assertEqual(h.codes(), [501, 501, 501])

    def test_quit(self):
        """QUIT answers ``221 <greeting> closing connection`` and closes."""
        h = Harness(self)
        h.send("QUIT\r\nNOOP\r\n")
        self.assertEqual(h.replies(), ["221 mx.example.com closing connection"])
        self.assertTrue(h.closed)

    def test_unknown_command(self):
        """Unknown commands get upstream's 502 texts; X-commands are "not implemented"."""
        h = Harness(self)
        h.send("BURL 100\r\nTURN\r\nXEXPS\r\n")
        self.assertEqual(h.replies(), ["502 command BURL 100 not recognized (#5.5.2)",
                                       "502 command TURN not recognized (#5.5.2)",
                                       "502 command XEXPS not implemented (#5.5.1)"])

    def test_bare_lf_command_lines(self):
        """Commands ended by a bare LF are accepted (qmail's getln)."""
        h = Harness(self)
        h.send("NOOP\nNOOP\r\n")
        self.assertEqual(h.codes(), [250, 250])

    def test_line_too_long(self):
        """A command line over 1000 bytes: 553 ... too long, connection closed."""
        h = Harness(self)
        h.send("NOOP " + "x" * 1000 + "\r\n")
        self.assertEqual(h.replies(), ["553 sorry, the given command is too long! (#5.5.2)"])
        self.assertTrue(h.closed)

    def test_line_too_long_without_newline(self):
        """An unterminated line longer than the limit is refused without waiting."""
        h = Harness(self, maxcmdlen=100)
        h.send("NOOP " + "x" * 200)
        self.assertEqual(h.codes(), [553])
        self.assertTrue(h.closed)

    def test_line_at_limit(self):
        """A 1000-byte command line (CRLF included) is still read."""
        h = Harness(self)
        h.send("VRFY " + "x" * 993 + "\r\n")
        self.assertEqual(h.codes(), [252])


class MailAndRcpt(SynchronousTestCase):

    def test_sequence_errors(self):
        """RCPT and DATA before MAIL: 503 MAIL first; DATA without RCPT: 503 RCPT first."""
        h = Harness(self)
        h.send("RCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual(h.replies(), ["503 MAIL first (#5.5.1)"] * 2)
        h.send("MAIL FROM:<a@example.net>\r\nDATA\r\n")
        self.assertEqual(h.replies(), ["250 ok", "503 RCPT first (#5.5.1)"])

    def test_address_forms(self):
        """``<addr>``, ``<>``, a space after the colon and missing brackets are all taken."""
        h = Harness(self)
        for arg, sender in [("FROM:<a@example.net>", "a@example.net"),
                            ("FROM: <a@example.net>", "a@example.net"),
                            ("from:a@example.net", "a@example.net"),
                            ("FROM:<>", ""),
                            ("FROM:<@relay.example:a@example.net> BODY=8BITMIME",
                             "a@example.net")]:
            h.send(f"MAIL {arg}\r\n")
            self.assertEqual(h.codes(), [250], arg)
            self.assertEqual(h.proto.session.transaction.sender, sender)

    def test_syntax_error(self):
        """MAIL without a path: 555 syntax error in address."""
        h = Harness(self)
        h.send("MAIL\r\nMAIL FROM:\r\n")
        self.assertEqual(h.replies(), ["555 syntax error in address (#5.1.3)"] * 2)

    def test_mail_and_rcpt_decided_at_once_make_no_deferred(self):
        """When every plugin answers at once, MAIL and RCPT (accepted or
        refused) are answered without a Deferred: the commands of every
        message stay cheap."""
        from indimail.plugins import chain
        from indimail.smtp import protocol

        def no_deferreds(*args, **kwargs):
            raise AssertionError("a Deferred was made")
        h = Harness(self)
        self.patch(chain.defer, "succeed", no_deferreds)
        self.patch(protocol.defer, "maybeDeferred", no_deferreds)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
               "RCPT TO:<c@elsewhere.test>\r\n")
        self.assertEqual(h.codes(), [250, 250, 553])
        self.assertEqual(h.proto.session.notes.get("rcpt_errors"), 1)

    def test_rcpthosts_accepts_listed_domain(self):
        """A recipient whose domain is in rcpthosts is accepted."""
        h = Harness(self)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@Example.COM>\r\n")
        self.assertEqual(h.codes(), [250, 250])
        self.assertEqual(h.proto.session.transaction.recipients, ["b@Example.COM"])

    def test_rcpthosts_suffix_entry(self):
        """A ``.domain`` line accepts every sub-domain but not the domain itself."""
        h = Harness(self)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@x.sub.example.org>\r\n"
               "RCPT TO:<b@sub.example.org>\r\n")
        self.assertEqual(h.codes(), [250, 250, 553])

    def test_relay_denied(self):
        """A recipient outside rcpthosts without RELAYCLIENT is refused with 553."""
        h = Harness(self)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<c@elsewhere.example>\r\n")
        self.assertEqual(h.replies(), [
            "250 ok",
            "553 sorry, that domain isn't allowed to be relayed thru this MTA "
            "without authentication #5.7.1"])
        self.assertEqual(h.proto.session.transaction.recipients, [])

    def test_relayclient_allows_relay_and_is_appended(self):
        """RELAYCLIENT lets any recipient through, its value appended qmail style."""
        h = Harness(self, env={"RELAYCLIENT": "-relayed"})
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<c@elsewhere.example>\r\n")
        self.assertEqual(h.codes(), [250, 250])
        self.assertEqual(h.proto.session.transaction.recipients,
                         ["c@elsewhere.example-relayed"])

    def test_empty_relayclient(self):
        """An empty RELAYCLIENT (the usual tcp.smtp setting) relays unchanged."""
        h = Harness(self, env={"RELAYCLIENT": ""})
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<c@elsewhere.example>\r\n")
        self.assertEqual(h.codes(), [250, 250])
        self.assertEqual(h.proto.session.transaction.recipients, ["c@elsewhere.example"])

    def test_no_rcpthosts_is_closed_relay(self):
        """Without an rcpthosts file every domain is refused (closed relay by default)."""
        h = Harness(self, rcpthosts=None)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.codes(), [250, 553])

    def test_address_without_domain(self):
        """``RCPT TO:<postmaster>`` is accepted (qmail adds envnoathost later)."""
        h = Harness(self)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<postmaster>\r\n")
        self.assertEqual(h.codes(), [250, 250])

    def test_morercpthosts_cdb(self):
        """A domain listed in morercpthosts.cdb is accepted."""
        h = Harness(self)
        with cdblib.Writer(open(os.path.join(h.control.directory, "morercpthosts.cdb"),
                                "wb")) as w:
            w.put(b"more.example", b"")
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@more.example>\r\n")
        self.assertEqual(h.codes(), [250, 250])

    def test_size_parameter_over_limit(self):
        """MAIL ... SIZE= above databytes is refused with 552 at MAIL time."""
        h = Harness(self, databytes=1000)
        h.send("MAIL FROM:<a@example.net> SIZE=1001\r\nMAIL FROM:<a@example.net> SIZE=1000\r\n")
        self.assertEqual(h.replies(), [
            "552 sorry, that message size exceeds my databytes limit (#5.3.4)", "250 ok"])

    def test_helo_resets_transaction(self):
        """HELO/EHLO and RSET end the open transaction."""
        h = Harness(self)
        h.send("MAIL FROM:<a@example.net>\r\nEHLO x\r\nRCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.replies()[-1], "503 MAIL first (#5.5.1)")


class Data(SynchronousTestCase):

    def test_message_is_streamed_and_queued(self):
        """DATA: 354, the body is stored with LF line ends after the Received
        header, finish() gets the envelope, the reply is ``250 ok <time> qp <id>``."""
        h = Harness(self)
        h.send("HELO client.example.net\r\n")
        h.output()
        h.transaction(rcpts=("<b@example.com>", "<c@example.com>"))
        h.send("Subject: hi\r\n\r\nline 1\r\n")
        message = h.sink.messages[0]
        self.assertIn(b"Subject: hi\n\nline 1\n", message.data)
        self.assertIsNone(message.finished)
        h.send("line 2\r\n.\r\n")
        self.assertEqual(h.replies(), [f"250 ok {int(START)} qp 4242"])
        self.assertEqual(message.finished, ("a@example.net", ["b@example.com", "c@example.com"]))
        self.assertEqual(message.invoked, "network")
        self.assertEqual(message.remote_ip, REMOTE_IP)
        body = message.data.split(b"\n", 2)[2]
        self.assertEqual(body, b"Subject: hi\n\nline 1\nline 2\n")

    def test_received_header(self):
        """The Received header has upstream's form: program, pid, HELO, IP, by, with."""
        h = Harness(self)
        h.send("EHLO client.example.net\r\n")
        h.output()
        h.transaction()
        h.send(".\r\n")
        data = h.sink.messages[0].data
        first, second, rest = data.split(b"\n", 2)
        self.assertEqual(first, b"Received: indimail-mta smtpd 4711 (HELO client.example.net) "
                                b"(" + REMOTE_IP.encode() + b")")
        self.assertRegex(second.decode(), r"^  by mx\.example\.com with ESMTP; \w{3}, "
                                          r"\d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")
        self.assertEqual(rest, b"")

    def test_received_header_with_known_host(self):
        """With TCPREMOTEHOST known, ``from <host>`` is added; unsafe characters become ``?``."""
        h = Harness(self, env={"TCPREMOTEHOST": "client.example.net"})
        h.send("HELO bad<helo>\r\n")
        h.output()
        h.transaction()
        h.send(".\r\n")
        first = h.sink.messages[0].data.split(b"\n")[0]
        self.assertEqual(first, b"Received: indimail-mta smtpd 4711 from client.example.net "
                                b"(HELO bad?helo?) (" + REMOTE_IP.encode() + b")")

    def test_dot_unstuffing(self):
        """A leading dot is removed: ``..x`` is stored as ``.x``, ``..`` as ``.``."""
        h = Harness(self)
        h.transaction()
        h.send("..x\r\n..\r\na.b\r\n.\r\n")
        self.assertTrue(h.sink.messages[0].data.endswith(b"\n.x\n.\na.b\n"))
        self.assertEqual(h.codes(), [250])

    def test_bare_cr_is_kept(self):
        """A CR not followed by LF is data and stored as is."""
        h = Harness(self)
        h.transaction()
        h.send("a\rb\r\n.\r\n")
        self.assertTrue(h.sink.messages[0].data.endswith(b"\na\rb\n"))

    def test_long_data_lines_are_stored(self):
        """Data lines longer than the command limit are stored whole."""
        h = Harness(self)
        h.transaction()
        h.send(b"y" * 5000 + b"\r\n.\r\n")
        self.assertTrue(h.sink.messages[0].data.endswith(b"\n" + b"y" * 5000 + b"\n"))
        self.assertEqual(h.codes(), [250])

    def test_end_split_across_packets(self):
        """``CRLF.CRLF`` ends the data even when it arrives one byte at a time."""
        h = Harness(self)
        h.transaction()
        for byte in b"body\r\n.\r\n":
            self.assertEqual(h.codes(), [])
            h.send(bytes([byte]))
        self.assertEqual(h.codes(), [250])

    def test_databytes_exceeded(self):
        """A message over databytes is dropped at once (freeing the disk), read to
        its end, refused with 552 and never queued."""
        h = Harness(self, databytes=100)
        h.transaction()
        h.send("x" * 150 + "\r\n")
        self.assertEqual(h.codes(), [])
        self.assertTrue(h.sink.messages[0].aborted)
        h.send(".\r\nNOOP\r\n")
        self.assertEqual(h.replies(), [
            "552 sorry, that message size exceeds my databytes limit (#5.3.4)", "250 ok"])
        message = h.sink.messages[0]
        self.assertTrue(message.aborted)
        self.assertIsNone(message.finished)

    def test_databytes_exact(self):
        """A message of exactly databytes stored bytes is accepted."""
        h = Harness(self, databytes=10)
        h.transaction()
        h.send("123456789\r\n.\r\n")   # 10 bytes stored: nine digits and LF
        self.assertEqual(h.codes(), [250])

    def test_too_many_hops(self):
        """As many Received/Delivered-To header lines as maxhops: 554 looping."""
        h = Harness(self, maxhops=3)
        h.transaction()
        h.send("Received: a\r\nDelivered-To: b\r\nreceived: c\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(h.replies(), ["554 too many hops, this message is looping (#5.4.6)"])
        self.assertTrue(h.sink.messages[0].aborted)

    def test_received_lines_in_body_are_not_hops(self):
        """Only header lines count as hops."""
        h = Harness(self, maxhops=1)
        h.transaction()
        h.send("Subject: x\r\n\r\nReceived: not a header\r\n.\r\n")
        self.assertEqual(h.codes(), [250])

    def test_queue_error_reply(self):
        """A QueueError from finish() is answered with its SMTP reply."""
        h = Harness(self, sink=FakeSink(auto_finish=QueueError(53)))
        h.transaction()
        h.send(".\r\n")
        self.assertEqual(h.replies(), ["451 qq write error or disk full (#4.3.0)"])
        h2 = Harness(self, sink=FakeSink(auto_finish=QueueError(31)))
        h2.transaction()
        h2.send(".\r\n")
        self.assertEqual(h2.codes(), [554])

    def test_unexpected_finish_failure(self):
        """Any other failure of finish() is a logged 451, not a hang."""
        h = Harness(self, sink=FakeSink(auto_finish=RuntimeError("boom")))
        h.transaction()
        h.send(".\r\n")
        self.assertEqual(h.replies(), ["451 Sorry, I got a temporary queue failure (#4.3.0)"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_begin_failure(self):
        """When no message can be started DATA gets 451 temporary queue failure."""
        h = Harness(self, sink=FakeSink(fail_begin=OSError("no queue")))
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual(h.replies()[-1], "451 Sorry, I got a temporary queue failure (#4.3.0)")
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_connection_lost_in_data_aborts(self):
        """A client that goes away mid-DATA leaves nothing queued."""
        h = Harness(self)
        h.transaction()
        h.send("partial\r\n")
        h.proto.connectionLost(None)
        self.assertTrue(h.sink.messages[0].aborted)

    def test_two_messages_in_one_session(self):
        """After a message the session is ready for the next MAIL."""
        h = Harness(self)
        h.transaction()
        h.send(".\r\n")
        self.assertEqual(h.codes(), [250])
        h.send("RCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.codes(), [503])
        h.transaction()
        h.send(".\r\n")
        self.assertEqual(len(h.sink.messages), 2)


class Smuggling(SynchronousTestCase):
    """Only ``<CRLF>.<CRLF>`` ends DATA; bare LF/CR variants never do."""

    VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"]
    SMUGGLED = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"

    def test_variants_do_not_end_data_default(self):
        """By default a bare LF in data is refused with upstream's 451 and the
        connection closed: the data never ends, nothing is queued, the
        smuggled commands are never run."""
        for variant in self.VARIANTS:
            h = Harness(self)
            h.transaction()
            h.send(b"text" + variant + self.SMUGGLED)
            message = h.sink.messages[0]
            self.assertIsNone(message.finished, variant)
            self.assertEqual(len(h.sink.messages), 1, variant)
            if b"\n" in variant.replace(b"\r\n", b""):
                self.assertEqual(h.replies(), ["451 Sorry, I received Bare LF. (#4.6.0)"])
                self.assertTrue(h.closed)
                self.assertTrue(message.aborted)
            else:   # \r.\r: plain data, the message goes on
                self.assertEqual(h.replies(), [])
                h.send(b"\r\n.\r\n")
                self.assertEqual(h.codes(), [250])
                self.assertIn(b"text\r.\rMAIL FROM:<evil@example.net>\n", message.data)

    def test_variants_do_not_end_data_with_allow_barelf(self):
        """With ALLOW_BARELF a bare LF is stored as a line end, but no variant
        ends the data; only the final CRLF.CRLF does, with the smuggled
        commands stored as message text."""
        for variant in self.VARIANTS:
            h = Harness(self, allow_bare_lf=True)
            h.transaction()
            h.send(b"text" + variant + self.SMUGGLED)
            self.assertEqual(h.replies(), [], variant)
            message = h.sink.messages[0]
            self.assertIsNone(message.finished, variant)
            h.send(b"\r\n.\r\n")
            self.assertEqual(h.codes(), [250], variant)
            self.assertEqual(len(h.sink.messages), 1, variant)
            self.assertIn(b"MAIL FROM:<evil@example.net>\n", message.data, variant)

    def test_only_crlf_dot_crlf_ends(self):
        """The proper terminator ends the data and what follows is a command."""
        h = Harness(self)
        h.transaction()
        h.send(b"text\r\n.\r\nNOOP\r\n")
        self.assertEqual(h.codes(), [250, 250])


class Pipelining(SynchronousTestCase):

    def test_replies_in_order_while_queueing(self):
        """Commands pipelined behind DATA wait until the queue answers, then
        are answered in order."""
        h = Harness(self, sink=FakeSink(auto_finish=None))
        h.send("EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
               "RCPT TO:<c@elsewhere.example>\r\nDATA\r\n")
        self.assertEqual(h.codes(), [250, 250, 250, 553, 354])
        h.send("body\r\n.\r\nMAIL FROM:<d@example.net>\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(h.codes(), [])
        message = h.sink.messages[0]
        self.assertEqual(message.finished, ("a@example.net", ["b@example.com"]))
        message.finish_d.callback(77)
        self.assertEqual(h.replies(), [f"250 ok {int(START)} qp 77", "250 ok", "250 ok",
                                       "221 mx.example.com closing connection"])

    def test_backlog_pauses_reading(self):
        """A large pipelined backlog behind an outstanding reply pauses the transport."""
        h = Harness(self, sink=FakeSink(auto_finish=None))
        h.transaction()
        h.send(".\r\n" + "NOOP\r\n" * 20000)
        self.assertEqual(h.transport.producerState, "paused")
        h.sink.messages[0].finish_d.callback(1)
        self.assertEqual(h.transport.producerState, "producing")
        self.assertEqual(len(h.codes()), 20001)


class BackPressure(SynchronousTestCase):

    def test_pause_while_queue_is_behind(self):
        """Reading pauses while the message has more pending bytes than its
        high-water mark and resumes once it drains."""
        sink = FakeSink(high_water=100)
        sink.hold_writes = True
        h = Harness(self, sink=sink)
        h.transaction()
        h.send("x" * 200 + "\r\n")
        self.assertEqual(h.transport.producerState, "paused")
        h.sink.messages[0].drain()
        self.assertEqual(h.transport.producerState, "producing")
        h.send(".\r\n")
        self.assertEqual(h.codes(), [250])


class IdleTimeout(SynchronousTestCase):

    def test_timeout_waiting_for_command(self):
        """After timeoutsmtpd seconds of silence: 451 timeout, connection closed."""
        h = Harness(self, timeout=1200)
        h.clock.advance(1199)
        self.assertFalse(h.closed)
        h.send("NOOP\r\n")
        h.output()
        h.clock.advance(1199)
        self.assertFalse(h.closed)
        h.clock.advance(1)
        self.assertEqual(h.replies(),
                         ["451 Sorry, I reached a timeout reading from client (#4.4.2)"])
        self.assertTrue(h.closed)

    def test_timeout_in_data_aborts_message(self):
        """A client that stalls mid-DATA times out and its message is dropped."""
        h = Harness(self, timeout=30)
        h.transaction()
        h.send("partial\r\n")
        h.clock.advance(30)
        self.assertEqual(h.codes(), [451])
        self.assertTrue(h.sink.messages[0].aborted)

    def test_no_timeout_while_server_is_busy(self):
        """Time the server spends queueing does not count as client silence."""
        h = Harness(self, sink=FakeSink(auto_finish=None), timeout=30)
        h.transaction()
        h.send(".\r\n")
        h.clock.advance(60)
        self.assertFalse(h.closed)
        h.sink.messages[0].finish_d.callback(5)
        self.assertEqual(h.codes(), [250])
        h.clock.advance(30)
        self.assertTrue(h.closed)

    def test_timer_cancelled_on_close(self):
        """No timer is left behind once the connection is gone."""
        h = Harness(self)
        h.send("QUIT\r\n")
        h.proto.connectionLost(None)
        self.assertEqual(h.clock.getDelayedCalls(), [])
