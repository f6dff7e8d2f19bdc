"""SMTP worker processes of the all-in-one service: they share the listening
socket, are restarted when they die, follow SIGHUP, end with the main
process, and a new main process takes over from a killed one."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from indimail.smtp.workers import _parent, find_workers
from indimail.testing import free_port, twistd_argv, wait_for
from tests.e2e.support import MailSystem


def _send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("bob@remote.test", ["alice@example.com"],
                        f"Subject: {subject}\r\n\r\nbody\r\n")


def _ehlo(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.ehlo()[1].decode()


def _children(pid: int) -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == pid
                  and b"indimail.smtp.worker" in _cmdline(int(p)))


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


class WorkerTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        self.system = MailSystem(reactor)
        self.addCleanup(lambda: defer.ensureDeferred(self.system.teardown()))
        return defer.ensureDeferred(self.system.setup())

    async def start(self, workers: int = 2, port: int | None = None):
        system = self.system
        smtp = f"tcp:{port or 0}:interface=127.0.0.1"
        await system.start(twistd_argv("indimail", "--home", str(system.home), "--smtp", smtp,
                                       "--submission", "none", "--smtps", "none",
                                       "--smtp-workers", str(workers)))
        main = system.server.pid
        await wait_for(reactor, lambda: len(_children(main)) == workers and all(
            f"smtpd worker {n}: [-] SMTPFactory starting on" in system.server.output
            for n in range(1, workers + 1)), timeout=60, what=f"{workers} workers")
        return main

    @defer.inlineCallbacks
    def test_sessions_run_in_the_workers(self):
        """Mail sent to the shared port is taken by worker processes (their
        pids in the qmail-smtpd log lines) and delivered by the main process."""
        main = yield defer.ensureDeferred(self.start())
        workers = _children(main)
        for n in range(6):
            yield threads.deferToThread(_send, self.system.smtp_port, f"w{n}")
        yield defer.ensureDeferred(self.system.wait_files(self.system.alice_new, 6))
        pids = {int(p) for p in re.findall(r"qmail-smtpd: pid (\d+) from",
                                           self.system.server.output)}
        self.assertTrue(pids, self.system.server.output[-2000:])
        self.assertTrue(pids <= set(workers), (pids, workers))
        self.assertNotIn(main, pids)

    @defer.inlineCallbacks
    def test_a_dead_worker_is_restarted(self):
        """kill -9 of a worker: the main process starts a new one and mail flows."""
        main = yield defer.ensureDeferred(self.start())
        victim = _children(main)[0]
        os.kill(victim, signal.SIGKILL)
        yield defer.ensureDeferred(wait_for(
            reactor, lambda: len(_children(main)) == 2 and victim not in _children(main),
            timeout=60, what="a replacement worker"))
        yield threads.deferToThread(_send, self.system.smtp_port, "after-restart")
        yield defer.ensureDeferred(self.system.wait_files(self.system.alice_new, 1))
        self.assertIn("restarting", self.system.server.output)

    @defer.inlineCallbacks
    def test_sighup_reaches_the_workers(self):
        """A changed variables/smtpd/DATABYTES is in new sessions after SIGHUP."""
        yield defer.ensureDeferred(self.start())
        (self.system.home / "variables" / "smtpd").mkdir(parents=True, exist_ok=True)
        (self.system.home / "variables" / "smtpd" / "DATABYTES").write_text("12345\n")
        self.system.server.transport.signalProcess("HUP")
        output = lambda: self.system.server.output   # noqa: E731
        yield defer.ensureDeferred(wait_for(
            reactor, lambda: all(f"smtpd worker {n}: [indimail.smtp.service] indimail-smtpd: "
                                 "configuration reloaded" in output() for n in (1, 2)),
            timeout=60, what="both workers reloading"))
        replies = yield threads.deferToThread(
            lambda: [_ehlo(self.system.smtp_port) for _ in range(6)])
        self.assertTrue(all("SIZE 12345" in r for r in replies), replies)

    @defer.inlineCallbacks
    def test_workers_end_with_a_killed_main_and_a_new_main_takes_over(self):
        """kill -9 of the main process ends its workers; a new main process on the
        same port starts (the old sockets are gone) and takes mail."""
        port = free_port()
        main = yield defer.ensureDeferred(self.start(port=port))
        old = _children(main)
        yield defer.ensureDeferred(self.system.stop(signal.SIGKILL))
        yield defer.ensureDeferred(self.start(port=port))
        self.assertEqual(self.system.smtp_port, port)
        self.assertFalse(set(old) & set(find_workers(str(self.system.home))))
        yield threads.deferToThread(_send, port, "after-takeover")
        yield defer.ensureDeferred(self.system.wait_files(self.system.alice_new, 1))
        yield defer.ensureDeferred(wait_for(
            reactor, lambda: not any(os.path.exists(f"/proc/{pid}") and
                                     b"indimail.smtp.worker" in _cmdline(pid) for pid in old),
            timeout=30, what="the old workers to be gone"))

    def test_workers_zero_keeps_sessions_in_process(self):
        """--smtp-workers 0 runs SMTP in the main process (no worker children)."""
        async def run():
            main = await self.start(workers=0)
            await threads.deferToThread(_send, self.system.smtp_port, "inproc")
            await self.system.wait_files(self.system.alice_new, 1)
            self.assertEqual(_children(main), [])
        return defer.ensureDeferred(run())


class SocketSharing(unittest.SynchronousTestCase):
    def test_ssl_description_binds_as_tcp(self):
        """The main process binds an SMTPS endpoint as plain TCP on the same address."""
        from indimail.smtp.workers import _as_tcp
        self.assertEqual(_as_tcp(r"ssl:2465:interface=127.0.0.1:privateKey=/a\:b/cert.pem"),
                         "tcp:2465:interface=127.0.0.1")
        self.assertEqual(_as_tcp(r"ssl:465:interface=\:\:1:certKey=x"),
                         r"tcp:465:interface=\:\:1")

    def test_family_of_an_inherited_socket(self):
        """A worker learns the address family of the socket it inherits."""
        from indimail.smtp.workers import family_of
        sock = socket.socket(socket.AF_INET6)
        self.addCleanup(sock.close)
        self.assertEqual(family_of(sock.fileno()), socket.AF_INET6)
