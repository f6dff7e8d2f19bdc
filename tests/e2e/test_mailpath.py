"""The first end-to-end mail path with real processes and peers:
swaks -> SMTP -> queue -> Maildir; bounces and sendmail out through
smtproutes into Postfix's smtp-sink; the .tac deployment."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from indimail.testing import twistd_argv
from tests.e2e.support import MailSystem, files_in


class MailPathTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.system = MailSystem(reactor)
        self.addCleanup(lambda: defer.ensureDeferred(self.system.teardown()))
        return defer.ensureDeferred(self.system.setup())

    @defer.inlineCallbacks
    def test_swaks_to_maildir(self):
        """Mail swaks sends to alice@example.com lands in alice's Maildir/new with
        qmail-local's Return-Path and Delivered-To lines."""
        yield defer.ensureDeferred(self.system.start())
        out, err, code = yield defer.ensureDeferred(self.system.swaks(
            "--from", "bob@remote.test", "--to", "alice@example.com",
            "--header", "Subject: e2e one", "--body", "hello from swaks"))
        self.assertEqual(code, 0, out + err)
        self.assertIn("250 ok", out)
        files = yield defer.ensureDeferred(self.system.wait_files(self.system.alice_new))
        data = files[0].read_bytes()
        self.assertTrue(data.startswith(
            b"Return-Path: <bob@remote.test>\nDelivered-To: example.com-alice@example.com\n"),
            data[:200])
        self.assertIn(b"Subject: e2e one", data)
        self.assertIn(b"hello from swaks", data)

    @defer.inlineCallbacks
    def test_unknown_recipient_bounces_through_smtproutes(self):
        """Mail to a recipient with no .qmail file bounces to its sender in QSBMF
        form, and the bounce leaves through smtproutes into the sink."""
        yield defer.ensureDeferred(self.system.start())
        out, err, code = yield defer.ensureDeferred(self.system.swaks(
            "--from", "bob@remote.test", "--to", "nobody@example.com",
            "--body", "this will bounce"))
        self.assertEqual(code, 0, out + err)
        files = yield defer.ensureDeferred(self.system.wait_files(
            self.system.sink_dir, complete=b"this will bounce"))
        dump = files[0].read_bytes()
        self.assertIn(b"bob@remote.test", dump)
        self.assertIn(b"Hi. This is the qmail-send program at ", dump)
        self.assertIn(b"<nobody@example.com>:\n", dump)
        self.assertIn(b"Sorry, no mailbox here by that name. (#5.1.1)", dump)
        self.assertIn(b"--- Enclosed is a copy of the message.", dump)
        self.assertIn(b"this will bounce", dump)
        self.assertEqual(files_in(self.system.alice_new), [])

    @defer.inlineCallbacks
    def test_sendmail_to_remote_smtp_sink(self):
        """A message injected with sendmail is delivered remotely via smtproutes
        into Postfix's smtp-sink."""
        yield defer.ensureDeferred(self.system.start())
        message = b"Subject: via sendmail\n\nbody via sendmail\n"
        out, err, code = yield defer.ensureDeferred(self.system.run(
            "sendmail", "-f", "carol@example.com", "dave@remote.test", stdin=message))
        self.assertEqual(code, 0, (out, err))
        files = yield defer.ensureDeferred(self.system.wait_files(
            self.system.sink_dir, complete=b"body via sendmail"))
        dump = files[0].read_bytes()
        self.assertIn(b"dave@remote.test", dump)
        self.assertIn(b"carol@example.com", dump)
        self.assertIn(b"body via sendmail", dump)

    @defer.inlineCallbacks
    def test_tac_deployment(self):
        """twistd -ny tap/indimail.tac runs the same all-in-one service."""
        tac = Path(__file__).resolve().parents[2] / "tap" / "indimail.tac"
        extra = {"INDIMAIL_SMTP": "tcp:0:interface=127.0.0.1",
                 "INDIMAIL_SUBMISSION": "none", "INDIMAIL_SMTPS": "none"}
        yield defer.ensureDeferred(self.system.start(twistd_argv("-y", str(tac)), extra))
        out, err, code = yield defer.ensureDeferred(self.system.swaks(
            "--from", "bob@remote.test", "--to", "alice@example.com", "--body", "via tac"))
        self.assertEqual(code, 0, out + err)
        files = yield defer.ensureDeferred(self.system.wait_files(self.system.alice_new))
        self.assertIn(b"via tac", files[0].read_bytes())
