"""Address parsing, the DATA decoder, the Received header, relay policy, settings."""

from __future__ import annotations

import os
import random

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.smtp.address import domain_of, parse_path
from indimail.smtp.data import DataDecoder
from indimail.policy.rcpthosts import RelayPolicy, domain_suffixes
from indimail.smtp.received import safe, smtpd_received
from indimail.smtp.reply import Reply, SMTPError
from indimail.smtp.settings import databytes, load_settings

from .support import control_dir


class Addresses(SynchronousTestCase):

    def test_bracketed_with_params(self):
        """``<addr> KEY=value KEY`` gives the address and upper-cased params."""
        path = parse_path("FROM:<a@b.example> size=100 BODY=8BITMIME smtputf8")
        self.assertEqual(path.address, "a@b.example")
        self.assertEqual(path.params, {"SIZE": "100", "BODY": "8BITMIME", "SMTPUTF8": None})
        self.assertEqual(path.param("size"), "100")

    def test_quotes_and_escapes(self):
        """Quotes are removed (a ``>`` inside them is kept), ``\\`` escapes."""
        self.assertEqual(parse_path('TO:<"a b>c"@x.example>').address, "a b>c@x.example")
        self.assertEqual(parse_path(r"TO:<a\>b@x.example>").address, "a>b@x.example")

    def test_without_brackets(self):
        """No ``<``: the address follows the colon up to a space."""
        self.assertEqual(parse_path("TO: a@x.example SIZE=1").address, "a@x.example")
        self.assertIsNone(parse_path("TO"))
        self.assertIsNone(parse_path("TO:"))

    def test_too_long(self):
        """Addresses over 900 bytes are a syntax error."""
        self.assertIsNone(parse_path("TO:<" + "a" * 901 + ">"))
        self.assertIsNotNone(parse_path("TO:<" + "a" * 900 + ">"))
        self.assertIsNone(parse_path("TO:<" + "\u00e9" * 451 + "@x>"))      # bytes, not characters
        self.assertIsNotNone(parse_path("TO:<" + "\u00e9" * 448 + "@x>"))

    def test_plain_paths_match_the_unquoting_loop(self):
        """A path with nothing to unquote (the fast path) parses as the loop
        would: the null path, no closing bracket, parameters after it."""
        self.assertEqual(parse_path("FROM:<>").address, "")
        self.assertEqual(parse_path("TO:<a@x.example").address, "a@x.example")
        self.assertEqual(parse_path("TO:<@r.example:a@x.example> NOTIFY=NEVER").params,
                         {"NOTIFY": "NEVER"})
        self.assertEqual(parse_path("TO:<@r.example:a@x.example>").address, "a@x.example")
        self.assertEqual(parse_path('TO:<a"b"@x.example>').address, "ab@x.example")

    def test_domain_of(self):
        """The domain is what follows the last @, lower-cased."""
        self.assertEqual(domain_of('"x@y"@Host.Example'), "host.example")
        self.assertIsNone(domain_of("postmaster"))


class Decoder(SynchronousTestCase):

    def test_crlf_to_lf_and_end_offset(self):
        """Stored lines end in LF; the end offset points past CRLF.CRLF."""
        d = DataDecoder()
        out, end = d.feed(b"a\r\nb\r\n.\r\nQUIT\r\n")
        self.assertEqual(out, b"a\nb\n")
        self.assertEqual(end, 9)
        self.assertTrue(d.ended)

    def test_immediate_end(self):
        """An empty message is just ``.`` CRLF right after the 354."""
        d = DataDecoder()
        self.assertEqual(d.feed(b".\r\n"), (b"", 3))

    def test_dot_cr_not_followed_by_lf(self):
        """``CRLF.CR`` followed by something else is data, dot kept."""
        d = DataDecoder()
        out, end = d.feed(b"a\r\n.\rb\r\n.\r\n")
        self.assertEqual(out, b"a\n.\rb\n")

    def test_bare_lf_flags(self):
        """A LF without CR sets ``bare_lf`` and stops at that byte."""
        d = DataDecoder()
        out, end = d.feed(b"ab\ncd")
        self.assertTrue(d.bare_lf)
        self.assertEqual((out, end), (b"ab", 3))

    def test_size_and_overflow(self):
        """``size`` counts stored bytes; past the limit nothing more is handed out."""
        d = DataDecoder(limit=4)
        self.assertEqual(d.feed(b"abc\r\n")[0], b"abc\n")
        self.assertFalse(d.overflow)
        self.assertEqual(d.feed(b"d\r\n")[0], b"")
        self.assertTrue(d.overflow)
        self.assertEqual(d.size, 6)

    def test_split_and_fast_path_agree(self):
        """Output, end and bare-LF detection do not depend on how the input is
        split into packets, and the whole-chunk fast path agrees with the
        byte-by-byte path (random inputs, fixed seed)."""
        rng = random.Random(1234)

        def run(data, sizes, allow, fast=True):
            d = DataDecoder(allow_bare_lf=allow)
            if not fast:
                d._fast = lambda chunk: None
            out, pos, end = [], 0, None
            for size in sizes:
                chunk = data[pos:pos + size]
                if not chunk:
                    break
                piece, stop = d.feed(chunk)
                out.append(piece)
                if stop is not None:
                    end = pos + stop
                    break
                pos += len(chunk)
            return b"".join(out), end, d.bare_lf, d.hops

        for _ in range(400):
            data = bytes(rng.choice(b"ab.\r\n\r\n") for _ in range(rng.randint(0, 60)))
            allow = rng.random() < 0.5
            whole = run(data, [len(data) or 1], allow)
            slow = run(data, [1] * (len(data) + 1), allow, fast=False)
            cuts = [rng.randint(1, 7) for _ in range(len(data) + 1)]
            self.assertEqual(run(data, cuts, allow), whole, data)
            self.assertEqual(slow, whole, data)

    def test_whole_message_in_one_packet_takes_the_fast_path(self):
        """A message and its end in one packet (what most clients send for a
        small message): every line before the dot line is decoded in one
        pass, the byte-by-byte path sees only the end and what follows."""
        body = b"Subject: x\r\n\r\n" + b"line of text\r\n" * 50
        d = DataDecoder()
        seen = []
        slow = d._slow
        d._slow = lambda chunk: seen.append(chunk) or slow(chunk)
        out, end = d.feed(body + b".\r\nQUIT\r\n")
        self.assertEqual(out, body.replace(b"\r\n", b"\n"))
        self.assertEqual(end, len(body) + 3)
        self.assertEqual(seen, [b".\r\nQUIT\r\n"])

    def test_hops_counted_in_header_only(self):
        """Received/Delivered header lines count as hops, body lines do not."""
        d = DataDecoder()
        d.feed(b"Received: x\r\nDELIVERED-TO: y\r\nX: z\r\n\r\nReceived: w\r\n")
        self.assertEqual(d.hops, 2)


class ReceivedHeader(SynchronousTestCase):

    def test_form(self):
        """Two lines: program, pid, host, HELO, info@ip; then by/with/date."""
        line = smtpd_received(pid=9, local="mx.example", remote_ip="::1",
                              remote_host="h.example", remote_info="u@example.com",
                              helo="other.example", protocol="ESMTPA", now=0)
        first, second, _ = line.decode().split("\n")
        self.assertEqual(first, "Received: indimail-mta smtpd 9 from h.example "
                                "(HELO other.example) (u@example.com@::1)")
        self.assertTrue(second.startswith("  by mx.example with ESMTPA; "))

    def test_helo_same_as_host_is_left_out(self):
        """A HELO equal to the host name is not repeated."""
        line = smtpd_received(pid=9, local="mx", remote_ip="1.2.3.4", remote_host="H.example",
                              remote_info=None, helo="h.example", protocol="ESMTP", now=0)
        self.assertTrue(line.startswith(b"Received: indimail-mta smtpd 9 from H.example "
                                        b"(1.2.3.4)\n"))

    def test_hide_host(self):
        """HIDE_HOST leaves out every host, HELO and address."""
        line = smtpd_received(pid=9, local="mx", remote_ip="1.2.3.4", remote_host="h",
                              remote_info=None, helo="x", protocol="ESMTP", now=0, hide=True)
        self.assertNotIn(b"1.2.3.4", line)
        self.assertNotIn(b"mx", line)

    def test_safe(self):
        """Characters outside upstream's safe set become ``?``."""
        self.assertEqual(safe("a(b)c;d\"e\x00"), "a?b?c?d?e?")


class Policy(SynchronousTestCase):

    def test_suffixes(self):
        """A domain is looked up whole and by each ``.suffix``."""
        self.assertEqual(domain_suffixes("a.b.c"), ["a.b.c", ".b.c", ".c"])
        self.assertEqual(domain_suffixes(".b.c"), [".b.c", ".c"])     # no suffix at 0
        self.assertEqual(domain_suffixes("a..c."), ["a..c.", "..c.", ".c.", "."])
        self.assertEqual(domain_suffixes("localhost"), ["localhost"])

    def test_case_insensitive(self):
        """rcpthosts lines and domains compare case-insensitively."""
        policy = RelayPolicy(ControlFiles(control_dir(self, "Example.COM\n")))
        self.assertTrue(policy.in_rcpthosts("x@EXAMPLE.com"))

    def test_file_change_is_seen(self):
        """An edited rcpthosts is used without a restart."""
        path = control_dir(self, "one.example\n")
        policy = RelayPolicy(ControlFiles(path))
        self.assertFalse(policy.in_rcpthosts("x@two.example"))
        with open(os.path.join(path, "rcpthosts"), "a") as f:
            f.write("two.example\n# a comment\n")
        self.assertTrue(policy.in_rcpthosts("x@two.example"))

    def test_check_rcpt_error(self):
        """A refused recipient raises SMTPError carrying the 553 reply."""
        policy = RelayPolicy(ControlFiles(control_dir(self, "one.example\n")))
        with self.assertRaises(SMTPError) as ctx:
            policy.check_rcpt(Environment(), "s@x", "r@other.example")
        self.assertEqual(ctx.exception.reply.code, 553)


class Settings(SynchronousTestCase):

    def test_defaults(self):
        """Without control files: timeout 1200, maxhops 100, 1000-byte lines, no size limit."""
        s = load_settings(ControlFiles(control_dir(self, None)), Environment(), pid=1)
        self.assertEqual((s.timeout, s.maxhops, s.maxcmdlen, s.databytes),
                         (1200, 100, 1000, 0))

    def test_control_files(self):
        """me, smtpgreeting, timeoutsmtpd, databytes come from control/."""
        path = control_dir(self, None)
        for name, value in [("me", "mx.example"), ("smtpgreeting", "Greetings"),
                            ("timeoutsmtpd", "60"), ("databytes", "5000")]:
            with open(os.path.join(path, name), "w") as f:
                f.write(value + "\n")
        s = load_settings(ControlFiles(path), Environment({"TCPLOCALHOST": "lh"}), pid=1)
        self.assertEqual((s.me, s.greeting, s.local_host, s.timeout, s.databytes),
                         ("mx.example", "Greetings", "lh", 60, 5000))

    def test_databytes_env_wins(self):
        """DATABYTES in the session env overrides control/databytes; 0 = unlimited."""
        path = control_dir(self, None)
        with open(os.path.join(path, "databytes"), "w") as f:
            f.write("5000\n")
        control = ControlFiles(path)
        self.assertEqual(databytes(control, Environment({"DATABYTES": "10"})), 10)
        self.assertEqual(databytes(control, Environment({"DATABYTES": "0"})), 0)
        self.assertEqual(databytes(control, Environment()), 5000)

    def test_switches(self):
        """ALLOW_BARELF, HIDE_HOST and DISABLE_EXTRA_GREET are read from the env."""
        s = load_settings(ControlFiles(control_dir(self, None)),
                          Environment({"ALLOW_BARELF": "", "HIDE_HOST": "1",
                                       "DISABLE_EXTRA_GREET": ""}), pid=1)
        self.assertEqual((s.allow_bare_lf, s.hide_host, s.extra_greet), (True, True, False))


class Replies(SynchronousTestCase):

    def test_multiline(self):
        """Multi-line replies use ``code-`` on all lines but the last."""
        self.assertEqual(Reply.of(250, "a", "b", "c").to_bytes(),
                         b"250-a\r\n250-b\r\n250 c\r\n")
