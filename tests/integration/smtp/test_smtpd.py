"""indimail-smtpd on a real loopback socket with a real home and queue.

Clients are Python's smtplib (in a thread, so the reactor keeps serving)
and swaks (a child process).
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
from pathlib import Path

from twisted.internet import defer, reactor, threads, utils
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.config.tcprules import compile_tcprules
from indimail.queue.envelope import Envelope
from indimail.smtp.service import SMTPService, make_smtp_service

ME = "mx.example.com"


def serve_home(test: TestCase, home) -> None:
    """Run an SMTPService for *home* on a loopback port until *test* ends;
    sets ``test.pool``, ``test.service``, ``test.port`` and ``test.portno``."""
    test.pool = ThreadPool(minthreads=1, maxthreads=4, name="test-queue")
    test.pool.start()
    test.addCleanup(test.pool.stop)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    test.service = SMTPService(home, reactor=reactor, env=env, threadpool=test.pool)
    test.port = reactor.listenTCP(0, test.service.factory(), interface="127.0.0.1")
    test.addCleanup(test.port.stopListening)
    test.portno = test.port.getHost().port


class SMTPDTest(TestCase):

    def setUp(self):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME)
        serve_home(self, self.home)

    # -- helpers -------------------------------------------------------------------
    def set_tcprules(self, text: bytes) -> None:
        source = self.home.tcp / "tcp.smtp"
        source.write_bytes(text)
        compile_tcprules(source, source.with_name("tcp.smtp.cdb"))

    def queued(self) -> list[tuple[Envelope, bytes]]:
        """(envelope, message bytes) of every message in todo/."""
        queue = self.home.queue_base / "queue1"
        out = []
        for todo in sorted((queue / "todo").glob("*/*")):
            msgid = int(todo.name)
            mess = queue / "mess" / todo.parent.name / todo.name
            out.append((Envelope.from_todo(todo.read_bytes()), mess.read_bytes(), msgid))
        return out

    def smtplib_send(self, sender, rcpts, body: bytes):
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                return client.sendmail(sender, rcpts, body)
        return threads.deferToThread(run)

    # -- tests ---------------------------------------------------------------------
    async def test_smtplib_message_lands_in_queue(self):
        """A message sent with smtplib is queued: todo has the envelope, mess
        has the queue's and smtpd's Received lines, then the message with LF ends."""
        body = b"Subject: test\r\n\r\nhello\r\n.dot line\r\n"
        refused = await self.smtplib_send("alice@sender.example",
                                          ["bob@mx.example.com", "carol@remote.example"], body)
        self.assertEqual(refused, {})
        [(envelope, mess, msgid)] = self.queued()
        self.assertEqual(envelope.sender, "alice@sender.example")
        self.assertEqual(envelope.recipients, ["bob@mx.example.com", "carol@remote.example"])
        self.assertEqual(envelope.uid, os.getuid())
        lines = mess.split(b"\n")
        self.assertTrue(lines[0].startswith(b"Received: (indimail-mta "), lines[0])
        self.assertIn(b"invoked from network 127.0.0.1", lines[0])
        self.assertRegex(lines[1].decode(), r"^Received: indimail-mta smtpd \d+ "
                                            r"\(HELO client\.example\) \(127\.0\.0\.1\)$")
        self.assertTrue(lines[2].startswith(b"  by mx.example.com with ESMTP; "))
        self.assertTrue(mess.endswith(b"Subject: test\n\nhello\n.dot line\n"), mess)

    async def test_reply_names_queue_id(self):
        """The end-of-data reply is ``250 ok <time> qp <message id>``."""
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=30) as client:
                client.ehlo("client.example")
                client.mail("a@sender.example")
                client.rcpt("b@mx.example.com")
                return client.data(b"Subject: x\r\n\r\nbody\r\n")
        code, text = await threads.deferToThread(run)
        [(_, _, msgid)] = self.queued()
        self.assertEqual(code, 250)
        self.assertRegex(text.decode(), rf"^ok \d+ qp {msgid}$")

    async def test_swaks_pipelining(self):
        """swaks with PIPELINING delivers a message into the queue."""
        swaks = shutil.which("swaks")
        self.assertIsNotNone(swaks, "swaks is required for this test")
        out, err, code = await utils.getProcessOutputAndValue(
            swaks, ["--server", f"127.0.0.1:{self.portno}", "--to", "bob@mx.example.com",
                    "--from", "alice@sender.example", "--pipeline", "--helo", "swaks.example",
                    "--header", "Subject: via swaks", "--body", "swaks body"],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        self.assertEqual(code, 0, (out + err).decode())
        self.assertIn(b"PIPELINING", out)
        [(envelope, mess, msgid)] = self.queued()
        self.assertEqual(envelope.recipients, ["bob@mx.example.com"])
        self.assertIn(b"(HELO swaks.example)", mess)
        self.assertIn(b"Subject: via swaks\n", mess)
        self.assertIn(f"qp {msgid}".encode(), out)

    async def test_relay_denied_without_relayclient(self):
        """Without RELAYCLIENT from tcp.smtp a remote recipient gets 553 and a
        local one (rcpthosts) is still accepted."""
        self.set_tcprules(b"127.:allow\n")
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as ctx:
            await self.smtplib_send("a@sender.example", ["x@remote.example"], b"body\r\n")
        self.assertEqual(ctx.exception.recipients["x@remote.example"][0], 553)
        refused = await self.smtplib_send("a@sender.example",
                                          ["x@remote.example", "b@mx.example.com"], b"b\r\n")
        self.assertEqual(list(refused), ["x@remote.example"])
        [(envelope, _, _)] = self.queued()
        self.assertEqual(envelope.recipients, ["b@mx.example.com"])

    async def test_tcprules_deny_drops_connection(self):
        """A tcp.smtp deny closes the connection before the greeting."""
        self.set_tcprules(b"127.:deny\n")

        def run():
            with socket.create_connection(("127.0.0.1", self.portno), timeout=30) as s:
                return s.recv(100)
        self.assertEqual(await threads.deferToThread(run), b"")

    async def test_databytes_limit(self):
        """DATABYTES in variables/smtpd limits the message size (after SIGHUP reload)."""
        (self.home.variables_for("smtpd") / "DATABYTES").write_text("1000\n")
        self.service.reload()

        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=30) as client:
                client.ehlo("client.example")
                size = client.esmtp_features.get("size")
                client.mail("a@sender.example")
                client.rcpt("b@mx.example.com")
                return size, client.data(b"x" * 2000 + b"\r\n"), client.noop()
        size, (code, text), noop = await threads.deferToThread(run)
        self.assertEqual(size, "1000")
        self.assertEqual(code, 552)
        self.assertEqual(noop[0], 250)
        self.assertEqual(self.queued(), [])

    async def test_make_smtp_service_and_sighup(self):
        """make_smtp_service listens on its endpoint strings, queues mail, and a
        real SIGHUP re-reads variables/smtpd for new sessions."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        svc = make_smtp_service(self.home, reactor=reactor, smtp="tcp:0:interface=127.0.0.1",
                                submission="tcp:0:interface=127.0.0.1", env=env)
        svc.startService()
        self.addCleanup(svc.stopService)
        smtp_port = (await svc.getServiceNamed("smtp")._waitingForPort).getHost().port
        sub_port = (await svc.getServiceNamed("submission")._waitingForPort).getHost().port

        def ehlo_size(port):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.ehlo("client.example")
                return client.esmtp_features.get("size")
        self.assertEqual(await threads.deferToThread(ehlo_size, smtp_port), "")

        reloaded = defer.Deferred()
        reload = svc.reload
        svc.reload = lambda: (reload(), reloaded.callback(None))
        (self.home.variables_for("smtpd") / "DATABYTES").write_text("5000\n")
        self.assertEqual(signal.getsignal(signal.SIGHUP), svc._on_hup)
        os.kill(os.getpid(), signal.SIGHUP)
        await reloaded
        self.assertEqual(await threads.deferToThread(ehlo_size, smtp_port), "5000")
        self.assertEqual(await threads.deferToThread(ehlo_size, sub_port), "5000")

        def send(port):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                return client.sendmail("a@sender.example", ["b@mx.example.com"], b"x\r\n")
        self.assertEqual(await threads.deferToThread(send, smtp_port), {})
        self.assertEqual(len(self.queued()), 1)
        # the submission listener requires AUTH (REQUIREAUTH by default)
        with self.assertRaises(smtplib.SMTPSenderRefused) as ctx:
            await threads.deferToThread(send, sub_port)
        self.assertEqual(ctx.exception.smtp_code, 530)

    async def test_large_message_streams(self):
        """A 3 MB message is streamed into the queue intact."""
        line = b"0123456789" * 7 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * (3 * 1024 * 1024 // len(line))
        await self.smtplib_send("a@sender.example", ["b@mx.example.com"], body)
        [(_, mess, _)] = self.queued()
        self.assertTrue(mess.endswith(body.replace(b"\r\n", b"\n")))
