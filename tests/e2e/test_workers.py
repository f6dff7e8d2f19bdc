"""SMTP worker processes of the all-in-one service: they share the listening
socket, are restarted when they die, follow SIGHUP, end with the main
process, and a new main process takes over from a killed one."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from twisted.internet import defer, endpoints, reactor, threads
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from indimail.smtp.workers import _parent, find_workers
from indimail.testing import free_port, twistd_argv, wait_for
from tests.e2e.support import MailSystem


def _send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("bob@remote.test", ["alice@example.com"],
                        f"Subject: {subject}\r\n\r\nbody\r\n")


def _send_together(port: int, count: int, workers: list[int]) -> None:
    """*count* connections queued while the *workers* are stopped; the first
    worker wakes 30 ms before the others (it could take them all); then a
    message is sent over each connection."""
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=60)
                 for _ in range(count)]
        os.kill(workers[0], signal.SIGCONT)
        time.sleep(0.03)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)

    def one(n: int) -> None:
        client = smtplib.SMTP()
        client.sock = socks[n]
        code, _ = client.getreply()   # the greeting
        assert code == 220, code
        client.sendmail("bob@remote.test", ["alice@example.com"],
                        f"Subject: together {n}\r\n\r\nbody\r\n")
        client.quit()

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(one, range(count)))


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


class _Service:
    """A MailSystem whose all-in-one service runs SMTP worker processes."""

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


class WorkerTests(_Service, unittest.TestCase):

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
    def test_sessions_opened_together_are_spread_over_the_workers(self):
        """Twenty connections waiting at once: the less busy worker takes the
        next one, so both workers hold sessions even when one wakes first
        (a greedy accept gives it the whole burst)."""
        main = yield defer.ensureDeferred(self.start())
        workers = _children(main)
        yield threads.deferToThread(_send_together, self.system.smtp_port, 20, workers)
        yield defer.ensureDeferred(self.system.wait_files(self.system.alice_new, 20))
        pids = re.findall(r"qmail-smtpd: pid (\d+) from", self.system.server.output)
        shares = {pid: pids.count(str(pid)) for pid in workers}
        self.assertEqual(sum(shares.values()), 20, self.system.server.output[-2000:])
        self.assertTrue(all(share >= 6 for share in shares.values()), shares)

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


class _Raw(Protocol):
    """A client that only listens: ``greeted`` fires on the server's first
    bytes, ``lost`` (with everything received) when the connection ends."""

    def __init__(self):
        self.data = b""
        self.greeted = defer.Deferred()
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.data += data
        if not self.greeted.called:
            self.greeted.callback(self.data)

    def connectionLost(self, reason):
        if not self.greeted.called:
            self.greeted.callback(b"")
        self.lost.callback(self.data)


class SharedLimitsTests(_Service, unittest.TestCase):
    """MAXPERIP and MAXDAEMONS hold for the whole service, not per worker."""

    timeout = 240

    async def start_with(self, **variables: str) -> None:
        """Two workers, with *variables* in variables/smtpd/."""
        smtpd = self.system.home / "variables" / "smtpd"
        smtpd.mkdir(parents=True, exist_ok=True)
        for name, value in variables.items():
            (smtpd / name).write_text(f"{value}\n")
        await self.start()

    async def connect(self) -> _Raw:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.system.smtp_port)
        client = await endpoints.connectProtocol(endpoint, _Raw())
        self.addCleanup(client.transport.loseConnection)
        return client

    def refusals(self, line: str) -> set[int]:
        """The numbers of the workers that logged *line*."""
        return {int(n) for n in re.findall(rf"smtpd worker (\d+): .*{re.escape(line)}",
                                           self.system.server.output)}

    async def held_then_refused_everywhere(self, line: str) -> list[_Raw]:
        """Two idle sessions are greeted; then every further connection is
        closed without a byte until each worker has refused one (so a worker
        holding none of the two sessions refused as well)."""
        held = [await self.connect(), await self.connect()]
        for client in held:
            self.assertTrue((await client.greeted).startswith(b"220 "))
        for attempt in range(400):
            if self.refusals(line) == {1, 2}:
                break
            client = await self.connect()   # greeted fires with b"" on a silent close
            self.assertEqual(await client.greeted, b"", f"attempt {attempt} was served")
            logged = attempt + 1
            await wait_for(reactor, lambda: self.system.server.output.count(line) >= logged,
                           timeout=60, what="the refusal in the log")
        self.assertEqual(self.refusals(line), {1, 2}, "connections never reached both workers")
        return held

    async def served_after_closing(self, held: list[_Raw]) -> None:
        """After one held session ends, a new connection is greeted (the slot is
        freed when the server has seen the close: retry until then)."""
        held[0].transport.loseConnection()
        await held[0].lost

        async def greeted():
            client = await self.connect()
            data = await client.greeted
            if data.startswith(b"220 "):
                return client
            return None
        for _ in range(400):
            client = await greeted()
            if client is not None:
                break
        else:
            self.fail("no session accepted after one ended")
        third = await self.connect()
        self.assertEqual(await third.greeted, b"")   # full again

    def test_maxperip_across_workers(self):
        """variables/smtpd/MAXPERIP=2 with --smtp-workers 2: two idle sessions from
        127.0.0.1, then the third is dropped before any byte by whichever worker
        takes it (tcpserver's "no ip slots" line); one closed, one more accepted."""
        async def run():
            await self.start_with(MAXPERIP="2")
            held = await self.held_then_refused_everywhere(
                "tcpserver: no ip slots for 127.0.0.1, perIPlimit 2")
            await self.served_after_closing(held)
        return defer.ensureDeferred(run())

    def test_maxdaemons_across_workers(self):
        """variables/smtpd/MAXDAEMONS=2 with --smtp-workers 2: two idle sessions,
        then a third is dropped before any byte by either worker ("end ...
        maxdaemons 2"); one closed, one more accepted."""
        async def run():
            await self.start_with(MAXDAEMONS="2")
            held = await self.held_then_refused_everywhere(
                "tcpserver: end 127.0.0.1 maxdaemons 2")
            await self.served_after_closing(held)
        return defer.ensureDeferred(run())

    def test_a_killed_worker_leaks_no_slot(self):
        """MAXPERIP=1: the worker holding the only session from 127.0.0.1 is
        killed (-9); as soon as the main process has seen it end, the other
        worker accepts a new session from that IP (the dead worker's counts
        were zeroed, not left to block the IP)."""
        async def run():
            await self.start_with(MAXPERIP="1")
            held = await self.connect()
            self.assertTrue((await held.greeted).startswith(b"220 "))
            owner = _socket_owner(held.transport.getHost().port, self.system.smtp_port)
            self.assertIn(owner, _children(self.system.server.pid))
            os.kill(owner, signal.SIGKILL)
            await held.lost
            await wait_for(reactor, lambda: "ended (" in self.system.server.output,
                           timeout=60, what="the main process to see the worker end")
            client = await self.connect()
            self.assertTrue((await client.greeted).startswith(b"220 "))
        return defer.ensureDeferred(run())


def _socket_owner(client_port: int, server_port: int) -> int:
    """The pid holding the server side of the loopback connection from
    *client_port* (Linux ``/proc/net/tcp``)."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == server_port and \
               int(remote.split(":")[1], 16) == client_port:
                inode = fields[9]
    assert inode is not None, "no server socket for the connection"
    target = f"socket:[{inode}]"
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
            except OSError:
                continue
    raise AssertionError("no process holds the server socket")
