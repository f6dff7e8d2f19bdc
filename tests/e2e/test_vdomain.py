"""End to end for virtual domains: vadddomain/vadduser as commands, then
swaks -> SMTP -> queue -> .qmail-default -> vdelivermail (in-process) -> Maildir."""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.e2e.support import MailSystem


class VirtualDomainTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.system = MailSystem(reactor)
        self.addCleanup(lambda: defer.ensureDeferred(self.system.teardown()))
        home = str(self.system.home)
        for argv in (("indimail", "init", "--home", home),
                     ("vadddomain", "example.org", "pw"),
                     ("vadduser", "bob@example.org", "pw")):
            out, err, code = yield defer.ensureDeferred(self.system.run(*argv))
            self.assertEqual(code, 0, (argv, out, err))
        self.bob_new = self.system.home / "domains" / "example.org" / "bob" / "Maildir" / "new"
        yield defer.ensureDeferred(self.system.start())

    @defer.inlineCallbacks
    def test_user_gets_mail_and_unknown_user_bounces(self):
        """Mail to bob@example.org lands in bob's Maildir/new; mail bob sends to
        nobody@example.org comes back to him as a bounce with vdelivermail's text."""
        out, err, code = yield defer.ensureDeferred(self.system.swaks(
            "--from", "carol@remote.test", "--to", "bob@example.org",
            "--header", "Subject: vdomain one", "--body", "hello bob"))
        self.assertEqual(code, 0, out + err)
        files = yield defer.ensureDeferred(self.system.wait_files(self.bob_new))
        data = files[0].read_bytes()
        self.assertTrue(data.startswith(
            b"Return-Path: <carol@remote.test>\nDelivered-To: example.org-bob@example.org\n"),
            data[:200])
        self.assertIn(b"hello bob", data)

        out, err, code = yield defer.ensureDeferred(self.system.swaks(
            "--from", "bob@example.org", "--to", "nobody@example.org",
            "--body", "this will bounce"))
        self.assertEqual(code, 0, out + err)
        files = yield defer.ensureDeferred(self.system.wait_files(
            self.bob_new, count=2, complete=None))
        bounce = [f.read_bytes() for f in files if b"this will bounce" in f.read_bytes()]
        self.assertEqual(len(bounce), 1, [f.read_bytes()[:300] for f in files])
        self.assertIn(b"<nobody@example.org>:\n", bounce[0])
        self.assertIn(b"no account nobody@example.org here by that name. indimail (#5.1.5)",
                      bounce[0])
