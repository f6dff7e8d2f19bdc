"""The shared MAXPERIP/MAXDAEMONS table of the SMTP worker processes
(:mod:`indimail.smtp.limits`): several workers' counts add up, a restarted
worker's counts vanish, a full table refuses what it cannot count, and the
in-process counter keeps tcpserver's behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.smtp.limits import LocalLimits, SharedTable, _key
from indimail.smtp.service import SMTPFactory
from indimail.smtp.testing import FakeSink


class TableCase(SynchronousTestCase):

    def table(self, workers: int = 2, **kw) -> SharedTable:
        table = SharedTable.create(workers, **kw)
        self.addCleanup(table.close)
        return table


class TwoWorkers(TableCase):

    def test_perip_counts_every_worker(self):
        """MAXPERIP=2 with one session in each of two workers: a third from the
        same IP is refused in either worker; another IP is not."""
        t = self.table()
        w1, w2 = t.view(1, 0), t.view(2, 0)
        self.assertIsNotNone(w1.acquire("192.0.2.9", 2, 0).release)
        self.assertIsNotNone(w2.acquire("192.0.2.9", 2, 0).release)
        for w in (w1, w2):
            got = w.acquire("192.0.2.9", 2, 0)
            self.assertIsNone(got.release)
            self.assertEqual((got.limit, got.count), ("MAXPERIP", 2))
        self.assertIsNotNone(w1.acquire("192.0.2.10", 2, 0).release)
        self.assertEqual(w2.sessions_from("192.0.2.9"), 2)

    def test_release_frees_a_slot_for_any_worker(self):
        """A session ending in worker 1 lets worker 2 accept the IP again, once."""
        t = self.table()
        w1, w2 = t.view(1, 0), t.view(2, 0)
        first = w1.acquire("192.0.2.9", 2, 0)
        w2.acquire("192.0.2.9", 2, 0)
        first.release()
        self.assertIsNotNone(w2.acquire("192.0.2.9", 2, 0).release)
        self.assertIsNone(w2.acquire("192.0.2.9", 2, 0).release)

    def test_maxdaemons_counts_every_worker(self):
        """MAXDAEMONS=3 over two workers: the fourth session from anywhere is
        refused, and accepted again after one ends."""
        t = self.table()
        w1, w2 = t.view(1, 0), t.view(2, 0)
        a = w1.acquire("192.0.2.1", 0, 3)
        w2.acquire("192.0.2.2", 0, 3)
        w2.acquire("192.0.2.3", 0, 3)
        got = w1.acquire("192.0.2.4", 0, 3)
        self.assertEqual((got.release, got.limit, got.count), (None, "MAXDAEMONS", 3))
        a.release()
        self.assertIsNotNone(w1.acquire("192.0.2.4", 0, 3).release)
        self.assertEqual(w2.active, 3)

    def test_listeners_count_apart(self):
        """As with one tcpserver per port, each listener (scope) has its own
        counts: sessions on smtp do not use submission's MAXPERIP/MAXDAEMONS."""
        t = self.table(scopes=2)
        smtp, submission = t.view(1, 0), t.view(2, 1)
        smtp.acquire("192.0.2.9", 1, 1)
        self.assertIsNone(smtp.acquire("192.0.2.9", 1, 0).release)
        self.assertIsNotNone(submission.acquire("192.0.2.9", 1, 1).release)
        self.assertEqual((smtp.active, submission.active), (1, 1))

    def test_restart_zeroes_only_its_own_counts(self):
        """A worker reset (restart, or its death seen by the main process)
        drops its sessions from the counts; the other worker's stay."""
        t = self.table()
        w1, w2 = t.view(1, 0), t.view(2, 0)
        for _ in range(3):
            w1.acquire("192.0.2.9", 0, 0)
        w2.acquire("192.0.2.9", 0, 0)
        self.assertEqual((w1.active, w1.sessions_from("192.0.2.9")), (4, 4))
        t.reset(1)
        self.assertEqual((w2.active, w2.sessions_from("192.0.2.9")), (1, 1))
        self.assertIsNotNone(w1.acquire("192.0.2.9", 2, 0).release)
        self.assertIsNone(w1.acquire("192.0.2.9", 2, 0).release)

    def test_less_busy_peer_counts_every_listener_of_accepting_workers(self):
        """The balancing hint: another accepting worker with fewer sessions
        (over all its listeners) is less busy; a worker that is not accepting
        (starting, or reset at its death) is never chosen."""
        t = self.table(workers=3)
        for w in (1, 2, 3):
            t.mark_accepting(w)
        t.view(1, 0).acquire("192.0.2.9", 0, 0)
        t.view(1, 1).acquire("192.0.2.9", 0, 0)
        t.view(2, 0).acquire("192.0.2.9", 0, 0)
        t.view(3, 1).acquire("192.0.2.9", 0, 0)
        t.view(3, 1).acquire("192.0.2.9", 0, 0)
        self.assertEqual([t.sessions_of(w) for w in (1, 2, 3)], [2, 1, 2])
        self.assertTrue(t.has_less_busy_peer(1))
        self.assertFalse(t.has_less_busy_peer(2))
        t.reset(2)      # worker 2 died: its region is zeroed, so is its flag
        self.assertEqual(t.sessions_of(2), 0)
        self.assertFalse(t.has_less_busy_peer(1))
        t.mark_accepting(2)
        self.assertTrue(t.has_less_busy_peer(1))
        self.assertTrue(t.has_less_busy_peer(3))

    def test_release_after_a_reset_does_not_go_negative(self):
        """A release for a session counted before a reset leaves the counts at zero."""
        t = self.table()
        w1 = t.view(1, 0)
        got = w1.acquire("192.0.2.9", 0, 0)
        t.reset(1)
        got.release()
        self.assertEqual((w1.active, w1.sessions_from("192.0.2.9")), (0, 0))

    def test_another_process_shares_the_counts(self):
        """A second process attached to the table's fd (as a worker is) sees the
        first's sessions and its own count is seen back."""
        t = self.table()
        t.view(1, 0).acquire("192.0.2.9", 0, 0)
        code = ("import sys; from indimail.smtp.limits import SharedTable\n"
                "t = SharedTable(int(sys.argv[1])); v = t.view(2, 0)\n"
                "got = v.acquire('192.0.2.9', 3, 0)\n"
                "print(v.sessions_from('192.0.2.9'), got.release is not None)\n")
        out = subprocess.run([sys.executable, "-c", code, str(t.fd)], pass_fds=[t.fd],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self.assertEqual(out.stdout.split(), ["2", "True"], out.stderr)
        self.assertEqual(t.view(1, 0).sessions_from("192.0.2.9"), 2)

    def test_the_lock_excludes_other_processes(self):
        """While one process checks and counts, another cannot take the table's
        lock (a POSIX lock: per process, even on an inherited fd); it can after."""
        t = self.table()
        code = ("import fcntl, sys\n"
                "try:\n    fcntl.lockf(int(sys.argv[1]), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                "    print('got')\n"
                "except OSError:\n    print('busy')\n")

        def try_lock():
            return subprocess.run([sys.executable, "-c", code, str(t.fd)], pass_fds=[t.fd],
                                  capture_output=True, text=True, timeout=60).stdout.strip()
        with t.locked():
            self.assertEqual(try_lock(), "busy")
        self.assertEqual(try_lock(), "got")


class FullTable(TableCase):

    def test_full_region_refuses_only_under_a_perip_limit(self):
        """When a worker's slots are used up (3/4 of them), a new IP with a
        MAXPERIP limit is refused (it could not be counted: fail closed), one
        without a limit is served and still counted for MAXDAEMONS."""
        t = self.table(workers=1, slots=8)
        w = t.view(1, 0)
        held = [w.acquire(f"192.0.2.{n}", 5, 0) for n in range(6)]
        self.assertTrue(all(h.release for h in held))
        got = w.acquire("192.0.2.100", 5, 0)
        self.assertEqual((got.release, got.limit, got.full), (None, "MAXPERIP", True))
        extra = w.acquire("192.0.2.100", 0, 0)
        self.assertIsNotNone(extra.release)
        self.assertEqual(w.active, 7)
        self.assertIsNotNone(w.acquire("192.0.2.1", 5, 0).release)   # known IPs still count
        self.assertEqual(w.sessions_from("192.0.2.1"), 2)
        extra.release()
        held[0].release()
        self.assertEqual(w.active, 6)
        self.assertIsNotNone(w.acquire("192.0.2.100", 5, 0).release)

    def test_deletion_keeps_colliding_entries_reachable(self):
        """Many IPs come and go in a small table: every count stays right
        (entries shifted back on deletion remain found)."""
        t = self.table(workers=1, slots=16)
        w = t.view(1, 0)
        held: dict[str, list] = {}
        for round_ in range(40):
            ip = f"198.51.100.{round_ % 12}"
            held.setdefault(ip, []).append(w.acquire(ip, 0, 0))
            if round_ % 3 == 2:
                victim = sorted(held)[round_ % len(held)]
                if held[victim]:
                    held[victim].pop().release()
            for known, sessions in held.items():
                self.assertEqual(w.sessions_from(known), len(sessions), (round_, known))
        for sessions in held.values():
            for s in sessions:
                s.release()
        self.assertEqual(w.active, 0)
        self.assertEqual(t._used(t._region(1)), 0)

    def test_keys(self):
        """Keys differ per listener and per IP and are never the free-slot zero."""
        self.assertNotEqual(_key(0, "192.0.2.1"), _key(1, "192.0.2.1"))
        self.assertNotEqual(_key(0, "192.0.2.1"), _key(0, "192.0.2.2"))
        self.assertTrue(any(_key(0, "::1")))

    def test_bad_worker_or_scope(self):
        """A worker number or listener outside the table is an error, not a
        silent write into another region."""
        t = self.table(workers=2, scopes=1)
        self.assertRaises(ValueError, t.view, 3, 0)
        self.assertRaises(ValueError, t.view, 0, 0)
        self.assertRaises(ValueError, t.view, 1, 1)


class Factory(TableCase):

    def factory(self, env):
        root = Path(self.mktemp())
        root.mkdir()
        (root / "me").write_text("mx.example.com\n")
        return SMTPFactory(control=ControlFiles(root), sink=FakeSink(), env=lambda: env,
                           rules=None, reactor=Clock(), pid=1)

    def connect(self, factory, ip):
        addr = IPv4Address("TCP", ip, 4000)
        proto = factory.buildProtocol(addr)
        if proto is not None:
            proto.makeConnection(StringTransport(
                peerAddress=addr, hostAddress=IPv4Address("TCP", "192.0.2.1", 25)))
        return proto

    def test_default_is_in_process(self):
        """A factory on its own counts in memory (the single-process service)."""
        self.assertIsInstance(self.factory({}).limits, LocalLimits)

    def test_two_factories_on_one_table(self):
        """Two worker factories sharing a table: MAXPERIP=2 allows two sessions
        in total, the third gets no protocol (dropped before any byte) and is
        logged with tcpserver's words; a closed session frees its slot once."""
        t = self.table()
        f1, f2 = self.factory({"MAXPERIP": "2"}), self.factory({"MAXPERIP": "2"})
        f1.limits, f2.limits = t.view(1, 0), t.view(2, 0)
        a = self.connect(f1, "192.0.2.9")
        self.connect(f2, "192.0.2.9")
        from twisted.logger import globalLogPublisher
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.assertIsNone(self.connect(f1, "192.0.2.9"))
        self.assertIsNone(self.connect(f2, "192.0.2.9"))
        self.assertIn("tcpserver: no ip slots for 192.0.2.9, perIPlimit 2",
                      [e.get("log_format", "").format(**e) for e in events])
        a.connectionLost(None)
        a.connectionLost(None)   # counted once
        self.assertIsNotNone(self.connect(f2, "192.0.2.9"))
        self.assertIsNone(self.connect(f1, "192.0.2.9"))
        self.assertEqual(f1.active, 2)

    def test_maxdaemons_across_factories(self):
        """MAXDAEMONS=2 over two worker factories of one listener."""
        t = self.table()
        f1, f2 = self.factory({"MAXDAEMONS": "2"}), self.factory({"MAXDAEMONS": "2"})
        f1.limits, f2.limits = t.view(1, 0), t.view(2, 0)
        a = self.connect(f1, "192.0.2.1")
        self.connect(f2, "192.0.2.2")
        self.assertIsNone(self.connect(f1, "192.0.2.3"))
        self.assertIsNone(self.connect(f2, "192.0.2.3"))
        a.connectionLost(None)
        self.assertIsNotNone(self.connect(f2, "192.0.2.3"))

    def test_protocol_failure_frees_the_slot(self):
        """A session whose protocol cannot be built does not keep a slot."""
        t = self.table()
        f = self.factory({"MAXPERIP": "1"})
        f.limits = t.view(1, 0)

        def broken(*a, **kw):
            raise RuntimeError("broken")
        f.protocol = broken
        self.assertRaises(RuntimeError, f.buildProtocol, IPv4Address("TCP", "192.0.2.9", 1))
        self.assertEqual(f.limits.sessions_from("192.0.2.9"), 0)
