"""Local delivery features through the real delivery engine: QMAILLOCAL set
in the send service's variables, and mailarchive recipients added at
enqueue time and delivered."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

from indimail.config.init import init_home
from indimail.queue.enqueue import Enqueuer
from indimail.send.service import make_send_service
from tests.integration.send.test_engine_real import LineWaiter
from tests.unit.send.helpers import tempdir


class LocalEngineTests(unittest.TestCase):

    timeout = 60

    def setUp(self):
        self.base = tempdir(self)
        self.home = init_home(os.path.join(self.base, "home"), domain="example.com", env={},
                              hostname="mx.example.net")
        self.domain = self.home.domains / "example.com"
        for name in ("alice", "archive"):
            (self.domain / f".qmail-{name}").write_text(f"./{name}/Maildir/\n")
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name="test-local-engine")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.enqueuer = Enqueuer(self.home, {}, reactor=reactor, threadpool=self.pool)
        self.logs = LineWaiter()
        self.addCleanup(self.logs.close)

    def start(self):
        service = make_send_service(self.home, reactor=reactor, env={"PATH": os.environ["PATH"]},
                                    enqueuer=self.enqueuer)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service

    def new(self, name):
        path = self.domain / name / "Maildir" / "new"
        return sorted(os.listdir(path)) if path.exists() else []

    @defer.inlineCallbacks
    def test_qmaillocal_from_send_variables(self):
        """variables/send/QMAILLOCAL replaces the built-in deliverer: the
        program's output is the logged result and the Maildir stays empty."""
        script = os.path.join(self.base, "ql")
        with open(script, "w") as f:
            f.write(f'#!/bin/sh\necho "$2 $4 $6" > {self.base}/args\necho "did 0+0+1"\n')
        os.chmod(script, 0o755)
        variables = self.home.variables_for("send")
        os.makedirs(variables, exist_ok=True)
        (variables / "QMAILLOCAL").write_text(script + "\n")
        service = self.start()
        msgid = yield self.enqueuer.enqueue("sender@far.test", ["alice@example.com"],
                                            [b"Subject: t\n\nhi\n"])
        yield self.logs.wait(r"delivery \d+: success: did_0\+0\+1")
        yield self.logs.wait(rf"end msg {msgid}\b")
        yield service.stopService()
        self.assertEqual(open(os.path.join(self.base, "args")).read().split(),
                         ["example.com", "example.com-alice", "alice"])
        self.assertEqual(self.new("alice"), [])

    @defer.inlineCallbacks
    def test_mailarchive_copy_delivered(self):
        """A mailarchive rule adds archive@example.com at enqueue time; both
        the recipient and the archive get the message."""
        (self.home.control / "mailarchive").write_text("T:^alice@:archive@example.com\n")
        service = self.start()
        msgid = yield self.enqueuer.enqueue("sender@far.test", ["alice@example.com"],
                                            [b"Subject: t\n\nkeep me\n"])
        yield self.logs.wait(rf"end msg {msgid}\b")
        yield service.stopService()
        self.assertEqual(len(self.new("alice")), 1)
        [copy] = self.new("archive")
        data = (self.domain / "archive" / "Maildir" / "new" / copy).read_bytes()
        self.assertIn(b"Delivered-To: example.com-archive@example.com\n", data)
        self.assertIn(b"keep me", data)
