"""lock/tcpto: upstream's binary record format and its rules (errors within
max_tolerance count once, two errors mark an address down for min_backoff
plus jitter, a success clears), and the qmail-tcpto / qmail-tcpok commands."""

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery import tcpto
from indimail.delivery.tcpto import TcpTimeouts
from indimail.queue.fix import queue_fix
from indimail.queue.layout import QueueDir


class TableTests(SynchronousTestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.path = Path(self.base) / "tcpto"
        self.path.write_bytes(bytes(tcpto.SIZE))
        self.table = TcpTimeouts(self.path)

    def test_record_layout(self):
        """A first error writes upstream's 32-byte record: family at 0,
        count at 4, little-endian time at 8, the address at 16."""
        self.table.record("10.1.2.3", True, 120, 1_700_000_000)
        data = self.path.read_bytes()
        self.assertEqual(len(data), 2048)
        record = data[:32]
        self.assertEqual(record[0], socket.AF_INET)
        self.assertEqual(record[4], 1)
        self.assertEqual(struct.unpack_from("<I", record, 8)[0], 1_700_000_000)
        self.assertEqual(record[16:20], bytes([10, 1, 2, 3]))
        self.assertEqual(data[32:], bytes(2048 - 32))

    def test_ipv6_record(self):
        """An IPv6 address fills the 16 bytes from offset 16 with AF_INET6."""
        self.table.record("2001:db8::1", True, 120, 1000)
        record = self.path.read_bytes()[:32]
        self.assertEqual(record[0], socket.AF_INET6)
        self.assertEqual(record[16:32], socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
        [entry] = self.table.entries()
        self.assertEqual((entry.address, entry.errors), ("2001:db8::1", 1))

    def test_tolerance(self):
        """A second error within max_tolerance seconds is not counted; one
        after it is, and then the address is down."""
        self.table.record("10.0.0.1", True, 120, 1000)
        self.table.record("10.0.0.1", True, 120, 1100)
        self.assertEqual(self.table.entries()[0].errors, 1)
        self.assertFalse(self.table.is_down("10.0.0.1", -3600, 1100))
        self.table.record("10.0.0.1", True, 120, 1121)
        self.assertEqual(self.table.entries()[0].errors, 2)
        self.assertTrue(self.table.is_down("10.0.0.1", -3600, 1121))

    def test_backoff_expires(self):
        """A down address is skipped for min_backoff (+ jitter), then tried."""
        for when in (1000, 2000):
            self.table.record("10.0.0.1", True, 120, when)
        rng = random.Random(3)
        extra = tcpto.jitter(random.Random(3))
        self.assertTrue(self.table.is_down("10.0.0.1", 3600, 2000 + 3600 + extra - 1, rng))
        self.assertFalse(self.table.is_down("10.0.0.1", 3600, 2000 + 3600 + extra,
                                            random.Random(3)))

    def test_jitter_range(self):
        """The jitter is upstream's ((60 + (pid & 31)) << 6) - 3600."""
        values = {tcpto.jitter(random.Random(seed)) for seed in range(200)}
        self.assertEqual(min(values), 240)
        self.assertEqual(max(values), 2224)

    def test_success_clears(self):
        """A successful connection resets the address's count."""
        for when in (1000, 2000):
            self.table.record("10.0.0.1", True, 120, when)
        self.table.record("10.0.0.1", False, 120, 2001)
        self.assertEqual(self.table.entries(), [])
        self.assertFalse(self.table.is_down("10.0.0.1", -3600, 2001))

    def test_other_address_unaffected(self):
        """Only the failing address is marked."""
        for when in (1000, 2000):
            self.table.record("10.0.0.1", True, 120, when)
        self.assertFalse(self.table.is_down("10.0.0.2", -3600, 2001))

    def test_count_caps_at_ten(self):
        """The error count stops at 10."""
        for i in range(15):
            self.table.record("10.0.0.1", True, 0, 1000 + i)
        self.assertEqual(self.table.entries()[0].errors, 10)

    def test_full_table_reuses_oldest(self):
        """With all 64 slots used, the slot with the oldest when+count*1024
        is taken over."""
        for i in range(64):
            self.table.record(f"10.0.1.{i}", True, 120, 10_000 + i)
        self.table.record("10.9.9.9", True, 120, 20_000)
        addresses = {e.address for e in self.table.entries()}
        self.assertEqual(len(addresses), 64)
        self.assertIn("10.9.9.9", addresses)
        self.assertNotIn("10.0.1.0", addresses)

    def test_missing_file(self):
        """Without the file nothing is down, and a first error creates it."""
        self.path.unlink()
        self.assertFalse(self.table.is_down("10.0.0.1", 3600, 0))
        self.table.record("10.0.0.1", False, 120, 1)
        self.assertFalse(self.path.exists())
        self.table.record("10.0.0.1", True, 120, 1)
        self.assertEqual(self.path.stat().st_size, 2048)

    def test_clear(self):
        """clear() (qmail-tcpok) zeroes all 2048 bytes."""
        self.table.record("10.0.0.1", True, 120, 1)
        self.table.clear()
        self.assertEqual(self.path.read_bytes(), bytes(2048))

    def test_format(self):
        """qmail-tcpto's line, in upstream's words."""
        self.table.record("10.0.0.1", True, 120, 1000)
        [entry] = self.table.entries()
        self.assertEqual(tcpto.format_entry(entry, 1042),
                         "10.0.0.1 ipv4 timed out 42 seconds ago; # recent timeouts: 1")


class CommandTests(SynchronousTestCase):
    """qmail-tcpto and qmail-tcpok over every queue of a home."""

    def setUp(self):
        self.base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.base)
        (self.base / "control").mkdir()
        self.queues = [QueueDir(self.base / "queue" / f"queue{n}", 7) for n in (1, 2)]
        for queue in self.queues:
            queue_fix(queue)

    def run_cli(self, module):
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUE")}
        env.update(INDIMAIL_HOME=str(self.base), QUEUE_COUNT="2")
        return subprocess.run([sys.executable, "-m", f"indimail.cli.{module}"],
                              capture_output=True, env=env, timeout=60)

    def test_tcpto_prints_and_tcpok_clears(self):
        """qmail-tcpto lists each queue's timed-out addresses on stderr;
        qmail-tcpok empties every table."""
        TcpTimeouts(self.queues[0].lock_dir / "tcpto").record("10.0.0.1", True, 120, 1000)
        TcpTimeouts(self.queues[1].lock_dir / "tcpto").record("::1", True, 120, 1000)
        proc = self.run_cli("qmail_tcpto")
        self.assertEqual(proc.returncode, 0)
        lines = proc.stderr.decode().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertRegex(lines[0], r"^10\.0\.0\.1 ipv4 timed out \d+ seconds ago; "
                                   r"# recent timeouts: 1$")
        self.assertRegex(lines[1], r"^::1 ipv6 timed out \d+ seconds ago; # recent timeouts: 1$")
        proc = self.run_cli("qmail_tcpok")
        self.assertEqual(proc.returncode, 0)
        for queue in self.queues:
            self.assertEqual((queue.lock_dir / "tcpto").read_bytes(), bytes(2048))
        self.assertEqual(self.run_cli("qmail_tcpto").stderr, b"")
