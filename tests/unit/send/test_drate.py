"""drate: setting a domain's rate, the query output of the seed, reset,
consolidate and test mode."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial import unittest

from indimail.cli import drate
from indimail.send.ratelimit import RateState

from .helpers import tempdir

START = 1622218631      # Fri, 28 May 2021 21:47:11 +0530


class DrateTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.base = Path(tempdir(self))
        (self.base / "slowq").mkdir()
        self.env = {"QUEUE_BASE": str(self.base), "INDIMAIL_HOME": str(self.base)}
        old_tz = os.environ.get("TZ")
        os.environ["TZ"] = "Asia/Kolkata"
        time.tzset()

        def restore():
            if old_tz is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old_tz
            time.tzset()
        self.addCleanup(restore)

    def run_drate(self, *argv, now=START):
        out, err = io.StringIO(), io.StringIO()
        code = drate.run(list(argv), self.env, out, err, now=now)
        return code, out.getvalue(), err.getvalue()

    @property
    def ratefile(self) -> Path:
        return self.base / "slowq" / "ratelimit" / "yahoo.com"

    def test_set_then_query_as_the_seed(self):
        """``drate -d yahoo.com -r 50/3600`` writes the four fields; the query
        72 s later prints the seed's first example exactly."""
        self.assertEqual(self.run_drate("-d", "yahoo.com", "-r", "50/3600")[0], 0)
        self.assertEqual(self.ratefile.read_bytes(),
                         f"50/3600\0000\000{START}\000{START}\000".encode())
        code, out, _ = self.run_drate("-d", "yahoo.com", now=START + 72)
        self.assertEqual(code, 0)
        self.assertEqual(out, "Conf   Rate: 50/3600 (0.0138888888)\n"
                              "Email Count: 0\n"
                              "Start  Time: Fri, 28 May 2021 21:47:11 +0530\n"
                              "End    Time: Fri, 28 May 2021 21:47:11 +0530\n"
                              "CurrentTime: Fri, 28 May 2021 21:48:23 +0530\n"
                              "CurrentRate: 0.0000000000\n")

    def test_query_during_delivery(self):
        """After deliveries: LastUpdated and the rate marked OK (seed's second
        example), or High with the wait when above the configured rate."""
        self.ratefile.parent.mkdir()
        self.ratefile.write_bytes(RateState("5/3600", 70, START, 1622306261).to_bytes())
        _, out, _ = self.run_drate("-d", "yahoo.com", now=1622523181)
        self.assertEqual(out, "Conf   Rate: 5/3600 (0.0013888888)\n"
                              "Email Count: 70\n"
                              "Start  Time: Fri, 28 May 2021 21:47:11 +0530\n"
                              "LastUpdated: Sat, 29 May 2021 22:07:41 +0530\n"
                              "CurrentTime: Tue, 1 Jun 2021 10:23:01 +0530\n"
                              "CurrentRate: 0.0002298473 OK\n")
        _, out, _ = self.run_drate("-d", "yahoo.com", now=START + 3600)
        self.assertTrue(out.endswith("CurrentRate: 0.0194444444 High; need 46800 secs\n"), out)

    def test_change_keeps_counts_and_increments(self):
        """-r on an existing file keeps the counts; +expr appends; -c folds it."""
        self.run_drate("-d", "yahoo.com", "-r", "50/3600")
        self.ratefile.write_bytes(RateState("50/3600", 9, START, START + 5).to_bytes())
        self.run_drate("-d", "user@yahoo.com", "-r", "+10/3600")
        self.assertEqual(RateState.parse(self.ratefile.read_bytes()),
                         RateState("50/3600+10/3600", 9, START, START + 5))
        self.run_drate("-d", "yahoo.com", "-r", "+0", "-c")
        self.assertEqual(RateState.parse(self.ratefile.read_bytes()).expression, "0.0166666666")

    def test_reset(self):
        """-R starts counting again now, keeping the rate."""
        self.run_drate("-d", "yahoo.com", "-r", "50/3600")
        self.ratefile.write_bytes(RateState("50/3600", 9, START, START + 5).to_bytes())
        self.assertEqual(self.run_drate("-d", "yahoo.com", "-R", now=START + 100)[0], 0)
        self.assertEqual(RateState.parse(self.ratefile.read_bytes()),
                         RateState("50/3600", 0, START + 100, START + 100))

    def test_test_mode(self):
        """-t counts like a delivery: the second one within a second exceeds."""
        self.run_drate("-d", "yahoo.com", "-r", "1/3600")
        code, _, err = self.run_drate("-t", "-d", "yahoo.com", now=START + 10)
        self.assertEqual((code, err), (0, "yahoo.com: email rate "
                                          "[1/0.0000000000/0.0002777777] need -10\n"))
        code, _, err = self.run_drate("-t", "-d", "yahoo.com", now=START + 10)
        self.assertEqual(code, 111)
        self.assertIn("drate: warn: yahoo.com: delivery rate exceeded [2/", err)

    def test_errors(self):
        """No domain, no such file, a bad expression, a bad option."""
        self.assertEqual(self.run_drate("-r", "1/2")[0], 111)
        code, _, err = self.run_drate("-d", "nowhere.example")
        self.assertEqual(code, 111)
        self.assertEqual(self.run_drate("-d", "yahoo.com", "-r", "1/0")[0], 100)
        self.assertFalse(self.ratefile.exists())
        self.assertEqual(self.run_drate("-x")[0], 100)

    def test_console_entry(self):
        """``python -m indimail.cli.drate`` works as a command."""
        env = dict(os.environ, **self.env)
        subprocess.run([sys.executable, "-m", "indimail.cli.drate", "-d", "yahoo.com",
                        "-r", "5/60"], env=env, check=True, timeout=120)
        result = subprocess.run([sys.executable, "-m", "indimail.cli.drate", "-d", "yahoo.com"],
                                env=env, check=True, timeout=120, capture_output=True, text=True)
        self.assertTrue(result.stdout.startswith("Conf   Rate: 5/60 (0.0833333333)\n"))
