"""Header completion shared by qmail-inject and sendmail."""

import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.queue.inject import (Identity, body_chunks, complete_header,
                                   envelope_sender, header_recipients, read_header)

from .helpers import tmp_path


def ident(**kw):
    base = dict(user="alice", host="example.com", defaulthost="example.com",
                defaultdomain="example.com", idhost="id.example.com", fullname=None)
    base.update(kw)
    return Identity(**base)


class ReadHeaderTests(SynchronousTestCase):
    def test_fields_and_continuations(self):
        """Fields keep their raw lines including continuations; the body follows."""
        stream = io.BytesIO(b"To: a@x,\n b@y\nSubject: s\n\nbody\n")
        header, first, ended = read_header(stream)
        self.assertEqual([n for n, _ in header.fields], ["to", "subject"])
        self.assertEqual(header.fields[0][1], b"To: a@x,\n b@y\n")
        self.assertEqual((first, ended), (b"\n", False))
        self.assertEqual(b"".join(body_chunks(stream)), b"body\n")

    def test_no_header(self):
        """A first line that is not a field starts the body (a blank line is inserted)."""
        header, first, _ = read_header(io.BytesIO(b"just text\nmore\n"))
        self.assertEqual(header.fields, [])
        self.assertEqual(first, b"\njust text\n")

    def test_dot_ends(self):
        """With dot_ends a lone '.' ends the input, in the header or the body."""
        _h, first, ended = read_header(io.BytesIO(b"Subject: s\n.\n"), dot_ends=True)
        self.assertEqual((first, ended), (None, True))
        stream = io.BytesIO(b"Subject: s\n\na\n.\nb\n")
        read_header(stream, dot_ends=True)
        self.assertEqual(b"".join(body_chunks(stream, dot_ends=True)), b"a\n")

    def test_crlf(self):
        """CRLF input is taken as LF."""
        header, first, _ = read_header(io.BytesIO(b"Subject: s\r\n\r\nb\r\n"))
        self.assertEqual(header.fields[0][1], b"Subject: s\n")
        self.assertEqual(first, b"\n")


class CompletionTests(SynchronousTestCase):
    def test_adds_missing_fields(self):
        """Date, Message-ID <time.pid.qmail@idhost> and From are added;
        Bcc, Return-Path and Content-Length are dropped."""
        header, _f, _e = read_header(io.BytesIO(
            b"To: b@x\nBcc: c@x\nReturn-Path: <z@z>\nContent-Length: 9\n\n"))
        complete_header(header, ident(fullname="Alice"), now=1000, pid=77)
        text = header.to_bytes().decode()
        self.assertNotIn("Bcc", text)
        self.assertNotIn("Return-Path", text)
        self.assertNotIn("Content-Length", text)
        self.assertIn("Message-ID: <1000.77.qmail@id.example.com>\n", text)
        self.assertIn("From: Alice <alice@example.com>\n", text)
        self.assertRegex(text, r"Date: \w{3}, \d\d \w{3} 1970 ")

    def test_keeps_existing_unless_flags(self):
        """Existing From/Message-ID stay; QMAILINJECT f and i replace them."""
        raw = b"From: x@y\nMessage-ID: <m@y>\nDate: today\n\n"
        header, _f, _e = read_header(io.BytesIO(raw))
        complete_header(header, ident(), now=1, pid=1)
        self.assertIn(b"From: x@y\n", header.to_bytes())
        self.assertIn(b"Message-ID: <m@y>\n", header.to_bytes())
        header, _f, _e = read_header(io.BytesIO(raw))
        complete_header(header, ident(), now=1, pid=1, flags="fi")
        self.assertNotIn(b"x@y", header.to_bytes())
        self.assertNotIn(b"<m@y>", header.to_bytes())

    def test_header_recipients(self):
        """To/Cc/Bcc/Apparently-To, or only the Resent- fields when present."""
        header, _f, _e = read_header(io.BytesIO(
            b"To: A <a@x>, b@x\nCc: c@x\nBcc: d@x\nSubject: s\n\n"))
        self.assertEqual(header_recipients(header), ["a@x", "b@x", "c@x", "d@x"])
        header, _f, _e = read_header(io.BytesIO(b"To: a@x\nResent-To: r@x\n\n"))
        self.assertEqual(header_recipients(header), ["r@x"])

    def test_qualify(self):
        """Bare users get @defaulthost; dotless domains get .defaultdomain."""
        i = ident(defaulthost="dh.example", defaultdomain="example.net")
        self.assertEqual(i.qualify("bob"), "bob@dh.example")
        self.assertEqual(i.qualify("bob@host"), "bob@host.example.net")
        self.assertEqual(i.qualify("bob@a.b"), "bob@a.b")

    def test_identity_from_env(self):
        """QMAILUSER/MAILUSER/USER and QMAILHOST/MAILHOST/defaulthost/me."""
        d = Path(tmp_path(self))
        d.mkdir()
        (d / "me").write_text("me.example\n")
        control = ControlFiles(d)
        self.assertEqual(Identity.from_env({"USER": "u"}, control).address, "u@me.example")
        (d / "defaulthost").write_text("dh.example\n")
        self.assertEqual(Identity.from_env({"MAILUSER": "m", "USER": "u"}, control).address,
                         "m@dh.example")
        self.assertEqual(Identity.from_env({"QMAILUSER": "q", "MAILHOST": "mh"}, control).address,
                         "q@mh")

    def test_envelope_sender(self):
        """-f wins, then QMAILSUSER@QMAILSHOST, then the user's address."""
        self.assertEqual(envelope_sender({}, ident(), ""), "")
        self.assertEqual(envelope_sender({"QMAILSUSER": "s", "QMAILSHOST": "h"}, ident(), None),
                         "s@h")
        self.assertEqual(envelope_sender({}, ident(), None), "alice@example.com")
