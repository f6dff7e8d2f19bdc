"""Tests of the harness's pure parts: config rendering, timing logic, the report.

Run from the project root: ``python -m pytest -q bench/test_bench.py`` or
``python -m twisted.trial bench.test_bench``.  No server is started here; the
real measurement is the benchmark itself, never a timed test.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

sys.path.insert(0, str(Path(__file__).resolve().parent))

from indimail_peer import RELAY_RECIPIENT, IndimailPeer, fsync_variables  # noqa: E402
from latency import percentile  # noqa: E402
from load import Load, RoundResult, check_sample, parse_counter, run_round  # noqa: E402
from postfix_peer import PostfixLayout, render_main_cf, render_master_cf  # noqa: E402
from report import (per_session_ms, ratio, render_latency, render_table,  # noqa: E402
                    summarise, to_json)
from smtp_resources import Figures, parse_status, process_group, render, verdicts  # noqa: E402


class FakeClock:
    """Monotonic time that only moves when the harness sleeps."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeSource:
    """Stands in for smtp-source: writes its -c counter and exits at once."""

    def __init__(self, accepted: int, returncode: int = 0):
        self.accepted = accepted
        self.code = returncode
        self.argv = None
        self.pid = 0
        self.returncode = None

    def __call__(self, argv, stdin, stdout, stderr):
        self.argv = argv
        stdout.write("".join(f"{i}\r" for i in range(1, self.accepted + 1)).encode())
        stdout.flush()
        if self.code:
            stderr.write(b"smtp-source: fatal: bad reply\n")
            stderr.flush()
        return self

    def wait(self, timeout=None):
        self.returncode = self.code
        return self.code

    def poll(self):
        return self.returncode

    def kill(self):
        self.returncode = -9


class PostfixConfigTests(SynchronousTestCase):
    def test_main_cf_is_private_and_dns_free(self):
        """main.cf keeps every path under the temp root and turns DNS off."""
        lay = PostfixLayout(Path("/tmp/x"))
        text = render_main_cf(lay, 65534, 65534)
        self.assertIn("queue_directory = /tmp/x/spool\n", text)
        self.assertIn("data_directory = /tmp/x/data\n", text)
        self.assertIn("maillog_file = /tmp/x/maillog\n", text)
        self.assertIn("virtual_mailbox_domains = example.com\n", text)
        self.assertIn("virtual_uid_maps = static:65534\n", text)
        self.assertIn("disable_dns_lookups = yes\n", text)
        self.assertIn("inet_interfaces = 127.0.0.1\n", text)
        self.assertEqual(lay.maildir_new, Path("/tmp/x/mail/alice/Maildir/new"))

    def test_relay_mode_sends_everything_to_the_sink(self):
        """In relay mode Postfix relays to the sink and the recipient is remote."""
        lay = PostfixLayout(Path("/tmp/x"))
        self.assertIn("relayhost = [127.0.0.1]:10026\n", render_main_cf(lay, 1, 1, 10026))
        self.assertNotIn("relayhost", render_main_cf(lay, 1, 1))

    def test_master_cf_listens_on_the_given_port_without_chroot(self):
        """master.cf starts with an unchrooted smtpd on 127.0.0.1:PORT."""
        text = render_master_cf(10025)
        self.assertTrue(text.startswith("127.0.0.1:10025 inet n - n - - smtpd\n"))
        self.assertEqual({line.split()[4] for line in text.splitlines()}, {"n"})


class IndimailPeerTests(SynchronousTestCase):
    def test_twistd_listens_on_the_bench_port_only(self):
        """twistd runs in the foreground with SMTP on our port, other listeners off."""
        peer = IndimailPeer(Path("/tmp/r"), 40025, twistd=Path("/v/twistd"))
        self.assertEqual(peer.command(), [
            "/v/twistd", "-n", "--pidfile=", "indimail", "--home", "/tmp/r/home",
            "--smtp", "tcp:40025:interface=127.0.0.1",
            "--submission", "none", "--smtps", "none"])
        self.assertEqual(peer.maildir_new,
                         Path("/tmp/r/home/domains/example.com/alice/Maildir/new"))

    def test_relay_mode_routes_to_the_sink(self):
        """In relay mode indimail gets a default smtproutes line to the sink and
        the load goes to a remote recipient."""
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root, True)
        peer = IndimailPeer(root, 40025, relay_port=40026, indimail=Path("/bin/true"),
                            twistd=Path("/bin/true"))
        self.assertEqual(peer.recipient, RELAY_RECIPIENT)
        peer.indimail = Path(sys.executable).parent / "indimail"
        peer.prepare()
        self.assertEqual((peer.home / "control" / "smtproutes").read_text(),
                             ":127.0.0.1:40026\n")

    def test_percentile_is_nearest_rank(self):
        """p50/p99 of the latency bench are nearest-rank percentiles."""
        values = [float(v) for v in range(1, 101)]
        self.assertEqual((percentile(values, 50), percentile(values, 99)), (50.0, 99.0))
        self.assertEqual(percentile([3.0], 99), 3.0)

    def test_fsync_is_on(self):
        """Queueing is durable like Postfix's: USE_FSYNC on; USE_SYNCDIR on unless
        --no-syncdir asks for Postfix's level."""
        self.assertEqual(fsync_variables(True), {"USE_FSYNC": "1", "USE_SYNCDIR": "1"})
        self.assertEqual(fsync_variables(False), {"USE_FSYNC": "1", "USE_SYNCDIR": "0"})


class LoadTests(SynchronousTestCase):
    def test_command_uses_the_issue_load(self):
        """The default load is 20 sessions, 2,000 messages of 2 KB, with a counter."""
        argv = Load().command(2525, "alice@example.com", "smtp-source")
        self.assertEqual(argv, ["smtp-source", "-c", "-s", "20", "-m", "2000",
                                "-l", "2048", "-f", "bench@example.org",
                                "-t", "alice@example.com", "127.0.0.1:2525"])

    def test_parse_counter_takes_the_last_value(self):
        """smtp-source -c rewrites one line with \\r; the last number counts."""
        self.assertEqual(parse_counter(b"1\r2\r3\r\n"), 3)
        self.assertEqual(parse_counter(b""), 0)

    def test_round_times_inject_and_end_to_end(self):
        """End-to-end ends at the first poll that sees every message delivered."""
        clock = FakeClock()
        seen = iter([0, 0, 3, 7, 10, 10])
        source = FakeSource(10)
        result = run_round("x", 1, 2525, "a@b", Path("/nowhere"), Load(messages=10),
                           clock=clock, sleep=clock.sleep,
                           count=lambda _: next(seen), spawn=source,
                           check=lambda _d, _s: None)
        self.assertIsNone(result.error)
        self.assertEqual((result.accepted, result.delivered), (10, 10))
        self.assertAlmostEqual(result.e2e_seconds, 0.15)
        self.assertAlmostEqual(result.e2e_rate, 10 / 0.15)
        self.assertLessEqual(result.inject_seconds, result.e2e_seconds)
        self.assertAlmostEqual(result.max_gap, 0.05)
        self.assertEqual(result.progress[-1], (0.15, 10))

    def test_round_reports_a_shortfall_instead_of_hanging(self):
        """When deliveries stop, the round ends after *stall* seconds with a count."""
        clock = FakeClock()
        seen = iter([0])
        result = run_round("x", 1, 2525, "a@b", Path("/nowhere"), Load(messages=10),
                           clock=clock, sleep=clock.sleep, stall=1.0, timeout=1e12,
                           count=lambda _: next(seen, 4), spawn=FakeSource(10))
        self.assertEqual(result.delivered, 4)
        self.assertIsNone(result.e2e_seconds)
        self.assertIsNone(result.e2e_rate)
        self.assertIn("only 4/10", result.error)
        self.assertGreater(result.max_gap, 1.0)

    def test_failed_inject_has_no_rate(self):
        """An smtp-source failure is reported and yields no inject rate."""
        clock = FakeClock()
        result = run_round("x", 1, 2525, "a@b", Path("/nowhere"), Load(messages=10),
                           clock=clock, sleep=clock.sleep,
                           count=lambda _: 3, spawn=FakeSource(3, returncode=1))
        self.assertEqual(result.accepted, 3)
        self.assertIsNone(result.inject_rate)
        self.assertIn("bad reply", result.error)


class SampleTests(SynchronousTestCase):
    def test_a_short_delivery_is_reported(self):
        """A Maildir file smaller than the payload is flagged as truncated."""
        new = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, new)
        (new / "1.msg").write_bytes(b"x" * 10)
        self.assertIn("< payload 2048", check_sample(new, 2048))
        self.assertIsNone(check_sample(new, 10))

    def test_missing_maildir_is_not_a_sample_error(self):
        """No Maildir yet is a shortfall (counted elsewhere), not truncation."""
        self.assertIsNone(check_sample(Path(tempfile.mkdtemp()) / "missing", 2048))


def _result(system, rnd, inject, e2e, delivered=100):
    return RoundResult(system, rnd, 100, 100, delivered, inject, e2e)


class ReportTests(SynchronousTestCase):
    def test_medians_skip_incomplete_rounds(self):
        """Medians use complete rounds only; the count of good rounds is kept."""
        results = [_result("p", 1, 1.0, 2.0), _result("p", 2, 0.5, 1.0),
                   _result("p", 3, 0.25, None, delivered=50)]
        s = summarise("p", results)
        self.assertEqual((s.rounds, s.inject_ok, s.e2e_ok), (3, 3, 2))
        self.assertEqual(s.inject_median, 200.0)
        self.assertEqual(s.e2e_median, 75.0)

    def test_ratio_is_ours_over_theirs(self):
        """The ratio is indimail/postfix and absent when a side has no figure."""
        self.assertEqual(ratio(50.0, 200.0), 0.25)
        self.assertIsNone(ratio(None, 200.0))
        self.assertIsNone(ratio(50.0, None))

    def test_table_and_json_show_both_systems_and_ratios(self):
        """The table and the JSON name both systems, their medians and ratios."""
        results = [_result("indimail", 1, 2.0, 4.0), _result("postfix", 1, 1.0, 1.0)]
        ours, theirs = summarise("indimail", results), summarise("postfix", results)
        table = render_table(ours, theirs)
        self.assertIn("ratio indimail/postfix", table)
        self.assertIn("0.500", table)
        self.assertIn("0.250", table)
        self.assertIn('"e2e": 0.25', to_json(ours, theirs, results, {}))

    def test_time_per_message_per_session(self):
        """sessions / inject rate, in ms: with one session the 1-session
        latency per message; n/a when a system has no inject figure."""
        results = [_result("indimail", 1, 2.0, 4.0), _result("postfix", 1, 1.0, 1.0)]
        ours, theirs = summarise("indimail", results), summarise("postfix", results)
        a, b = per_session_ms(ours, 1), per_session_ms(theirs, 1)
        self.assertAlmostEqual(a / b, theirs.inject_median / ours.inject_median)
        self.assertAlmostEqual(per_session_ms(ours, 20), 20 * a)
        line = render_latency(ours, theirs, 1)
        self.assertIn(f"indimail {a:.2f} ms", line)
        self.assertIn(f"ratio {a / b:.2f}", line)
        empty = summarise("indimail", [])
        self.assertIsNone(per_session_ms(empty, 1))
        self.assertIn("indimail n/a ms", render_latency(empty, theirs, 1))


class ResourcesTests(SynchronousTestCase):
    def test_status_and_process_group(self):
        """VmRSS/VmHWM/Pss lines are read in bytes; the group is found by the
        pgrp field of /proc/PID/stat even when the command name has spaces."""
        self.assertEqual(parse_status("Name:\ttwistd\nVmRSS:\t  2048 kB\nPss:  10 kB\n"),
                         {"VmRSS": 2048 * 1024, "Pss": 10 * 1024})
        proc = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, proc)
        for pid, comm, pgrp in ((10, "twistd", 10), (11, "a (b) c", 10), (12, "other", 12)):
            (proc / str(pid)).mkdir()
            (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) S 1 {pgrp} {pgrp} 0\n")
        (proc / "self").mkdir()
        self.assertEqual(process_group(10, proc), [10, 11])

    def test_verdicts(self):
        """Each target is PASS or FAIL against its limit and printed so."""
        f = Figures(sessions=1000, rss_idle_mb=150.0, greeting_ms=[3.0, 120.0], message_mb=50,
                    rss_before_message_mb=100.0, rss_peak_message_mb=105.0)
        self.assertEqual([ok for _, _, ok in verdicts(f)], [True, False, True])
        text = render(f)
        self.assertIn("PASS  total RSS with 1000 idle sessions < 200 MB: 150.0 MB", text)
        self.assertIn("FAIL  greeting of a new session meanwhile < 100 ms (slowest): 120.0 ms",
                      text)
        self.assertIn("PASS  RSS increase for a 50 MB message < 20 MB: 5.0 MB", text)


# -- virtual-domain benchmarks: rcpt_check.py and auth_burst.py ------------------------

import asyncio  # noqa: E402
import socketserver  # noqa: E402
import threading  # noqa: E402
import base64  # noqa: E402
import random  # noqa: E402

from auth_burst import offers_plain, plain_token, split_samples  # noqa: E402
from rcpt_check import (DOMAIN, CpuMeter, Database, ServicePeer, chunks, cpu_seconds,  # noqa: E402
                        median_round, pick_recipients, read_reply, ReplyError,
                        tool_env, user_rows, verdict)
from rcpt_driver import drive, plan, take_reply  # noqa: E402
from rcpt_check import summarise as summarise_latencies  # noqa: E402


def _replies(data: bytes):
    """The replies read_reply takes from *data* (then EOF)."""
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        out = []
        while True:
            try:
                out.append(await read_reply(reader))
            except ReplyError as exc:
                out.append(str(exc))
                return out
    return asyncio.run(run())


class RcptCheckTests(SynchronousTestCase):
    TEMPLATE = {"pw_name": "user000000", "pw_domain": DOMAIN, "pw_passwd": "$6$salt$hash",
                "pw_uid": 1, "pw_gid": 0, "pw_gecos": "user000000",
                "pw_dir": f"/h/domains/{DOMAIN}/user000000", "pw_shell": "NOQUOTA"}

    def test_bulk_rows_copy_the_vadduser_row_with_their_own_name_and_home(self):
        """Bulk rows keep the template's password, uid, gid and quota, and get
        their own name, gecos and vadduser's hashed directory by add order."""
        rows = user_rows(self.TEMPLATE, f"/h/domains/{DOMAIN}", 1, 3, 99)
        self.assertEqual([r[0] for r in rows], ["user000001", "user000002", "user000003"])
        self.assertEqual({(r[1], r[2], r[3], r[4], r[7]) for r in rows},
                         {(DOMAIN, "$6$salt$hash", 1, 0, "NOQUOTA")})
        self.assertEqual([r[5] for r in rows], [r[0] for r in rows])
        self.assertEqual([r[6] for r in rows], [
            f"/h/domains/{DOMAIN}/user000001",       # the 100th user: still top level
            f"/h/domains/{DOMAIN}/0/user000002",     # 101st: first hashed directory
            f"/h/domains/{DOMAIN}/0/user000003"])

    def test_recipients_are_existing_users_of_the_domain(self):
        """Every picked recipient is user000000..user(N-1) of the bench domain."""
        picked = pick_recipients(random.Random(1), 50, 500)
        self.assertEqual(len(picked), 500)
        names = {f"user{n:06d}@{DOMAIN}" for n in range(50)}
        self.assertTrue(set(picked) <= names)
        self.assertGreater(len(set(picked)), 30)

    def test_chunks_split_rcpts_per_mail(self):
        """RCPTs are grouped per MAIL transaction, the last group shorter."""
        self.assertEqual(chunks(list(range(5)), 2), [[0, 1], [2, 3], [4]])


    def test_summary_and_verdict(self):
        """Percentiles are nearest-rank, the rate is count/seconds, and the
        verdict is PASS only below the limit."""
        s = summarise_latencies([0.001 * n for n in range(1, 101)], 2.0)
        self.assertEqual((s["count"], s["rate"]), (100, 50.0))
        self.assertAlmostEqual(s["p50"], 0.050)
        self.assertAlmostEqual(s["p99"], 0.099)
        self.assertEqual(summarise_latencies([], 1.0)["count"], 0)
        self.assertEqual(verdict("p99", 0.004, 0.005), ("PASS  p99 < 5 ms: 4.00 ms", True))
        self.assertEqual(verdict("p99", 0.005, 0.005), ("FAIL  p99 < 5 ms: 5.00 ms", False))

    def test_median_round_is_the_middle_p99(self):
        """The figure is the round with the median p99, not the best or the worst
        (the upper middle when the count is even)."""
        rounds = [{"p99": 0.007, "n": 1}, {"p99": 0.003, "n": 2}, {"p99": 0.005, "n": 3}]
        self.assertEqual(median_round(rounds)["n"], 3)
        self.assertEqual(median_round(rounds[:2])["n"], 1)
        self.assertEqual(median_round(rounds[:1])["n"], 1)

    def test_replies_multiline_and_eof(self):
        """read_reply returns the code of a multi-line reply with all its lines,
        and a closed connection is an error, not a hang."""
        out = _replies(b"250-bench\r\n250 AUTH PLAIN\r\n550 no\r\n25")
        self.assertEqual(out[0], (250, b"250-bench\r\n250 AUTH PLAIN\r\n"))
        self.assertEqual(out[1], (550, b"550 no\r\n"))
        self.assertIn("connection closed", out[2])

    def test_cpu_seconds_reads_utime_and_stime(self):
        """CPU of a /proc stat line is fields 14+15 in clock ticks, even when
        the command name has spaces."""
        stat = "42 (a (b) c) S 1 42 42 0 -1 0 0 0 0 0 150 50 0 0 20 0 1 0"
        self.assertEqual(cpu_seconds(stat, ticks=100), 2.0)

    def test_cpu_meter_counts_this_client_too(self):
        """The meter reports the benchmark process's own CPU beside the
        service's and the database's."""
        meter = CpuMeter(os.getpgid(0), db_names=("no-such-database",))
        meter.start()
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        used = meter.stop()
        self.assertEqual(used["db_cpu"], 0.0)
        self.assertGreaterEqual(used["client_cpu"], 0.05)

    def test_service_environment_names_the_database_and_drops_overrides(self):
        """The commands and twistd get the home, MYSQL_DATABASE and an empty
        MYSQL_PASSWD; CHECKRECIPIENT and AUTH-in-clear switches come only from
        the home's variables, never from the caller's environment."""
        db = Database("127.0.0.1:root::3306", name="indimail_bench_x")
        self.assertEqual(db.env(), {"MYSQL_DATABASE": "indimail_bench_x", "MYSQL_PASSWD": ""})
        import os
        self.patch(os, "environ", {"CHECKRECIPIENT": "1", "SECURE_AUTH": "",
                                   "MYSQL_HOST": "x", "PATH": "/bin"})
        env = tool_env(Path("/h"), db.env())
        self.assertEqual(env["INDIMAIL_HOME"], "/h")
        self.assertEqual(env["MYSQL_DATABASE"], "indimail_bench_x")
        for name in ("CHECKRECIPIENT", "SECURE_AUTH", "MYSQL_HOST"):
            self.assertNotIn(name, env)

    def test_service_command_passes_the_worker_count(self):
        """ServicePeer runs twistd indimail on the bench port, with
        --smtp-workers only when asked."""
        peer = ServicePeer(Path("/tmp/r"), 40025, {}, twistd=Path("/v/twistd"))
        self.assertNotIn("--smtp-workers", peer.command())
        peer = ServicePeer(Path("/tmp/r"), 40025, {}, workers="0", twistd=Path("/v/twistd"))
        self.assertEqual(peer.command()[-2:], ["--smtp-workers", "0"])
        self.assertEqual(peer.command()[:6],
                         ["/v/twistd", "-n", "--pidfile=", "indimail", "--home", "/tmp/r/home"])


class _SmtpStub(socketserver.StreamRequestHandler):
    """Just enough SMTP for the driver: RCPTs of ``bad...`` are refused
    (550), a MAIL from ``<fail@...>`` gets 451."""

    def handle(self):
        self.wfile.write(b"220 stub\r\n")
        for line in self.rfile:
            verb = line[:4].upper()
            if verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            if verb == b"EHLO":
                reply = b"250-stub\r\n250 PIPELINING\r\n"
            elif verb == b"RCPT" and b"<bad" in line:
                reply = b"550 no such user\r\n"
            elif verb == b"MAIL" and b"<fail@" in line:
                reply = b"451 try later\r\n"
            else:
                reply = b"250 ok\r\n"
            self.wfile.write(reply)


class RcptDriverTests(SynchronousTestCase):
    def setUp(self):
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpStub)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.port = self.server.server_address[1]

    def test_take_reply_takes_whole_replies_only(self):
        """A multi-line reply comes out whole, code and all lines; a partial
        line stays in the buffer."""
        buffer = bytearray(b"250-bench\r\n250 AUTH PLAIN\r\n550 no\r\n25")
        self.assertEqual(take_reply(buffer), (250, b"250-bench\r\n250 AUTH PLAIN\r\n"))
        self.assertEqual(take_reply(buffer), (550, b"550 no\r\n"))
        self.assertIsNone(take_reply(buffer))
        self.assertEqual(buffer, bytearray(b"25"))
        self.assertRaises(ReplyError, take_reply, bytearray(b"hello\r\n"))

    def test_plan_is_mail_rcpts_rset_per_transaction_and_times_only_rcpts(self):
        commands = plan(["a@x", "b@x", "c@x"], 2, "s@y")
        self.assertEqual([c.line for c in commands], [
            b"MAIL FROM:<s@y>\r\n", b"RCPT TO:<a@x>\r\n", b"RCPT TO:<b@x>\r\n", b"RSET\r\n",
            b"MAIL FROM:<s@y>\r\n", b"RCPT TO:<c@x>\r\n", b"RSET\r\n"])
        self.assertEqual([c.timed for c in commands], [False, True, True, False] * 1
                         + [False, True, False])

    def test_drive_times_every_rcpt_and_keeps_refusals(self):
        """Every RCPT of every session is timed; refusals are kept, not fatal."""
        sessions = [plan(["a@x", "bad1@x", "b@x"], 2, "s@y"), plan(["c@x"] * 4, 3, "s@y")]
        latencies, refused, seconds = drive(self.port, sessions)
        self.assertEqual(len(latencies), 7)
        self.assertTrue(all(0 < t < seconds + 1 for t in latencies))
        self.assertEqual(refused, [b"550 no such user\r\n"])

    def test_drive_paces_each_session(self):
        """With an interval each session sends one RCPT per interval."""
        _, _, seconds = drive(self.port, [plan(["a@x"] * 4, 100, "s@y")], interval=0.05)
        self.assertGreaterEqual(seconds, 0.15)

    def test_an_unexpected_code_is_an_error(self):
        """A MAIL not answered 250 stops the run with the reply in the error."""
        with self.assertRaises(ReplyError) as caught:
            drive(self.port, [plan(["a@x"], 1, "fail@y")])
        self.assertIn("451 try later", str(caught.exception))


class AuthBurstTests(SynchronousTestCase):
    def test_plain_token(self):
        """AUTH PLAIN's initial response is base64 of NUL login NUL password."""
        token = plain_token("auth00001@bench.example", "pw")
        self.assertEqual(base64.b64decode(token), b"\0auth00001@bench.example\0pw")

    def test_offers_plain_reads_the_auth_line(self):
        """PLAIN counts only on the EHLO AUTH line (SECURE_AUTH withholds it)."""
        self.assertTrue(offers_plain(b"250-host\r\n250-AUTH LOGIN PLAIN CRAM-MD5\r\n"
                                     b"250 AUTH=LOGIN PLAIN CRAM-MD5\r\n"))
        self.assertFalse(offers_plain(b"250-host\r\n250-AUTH CRAM-MD5\r\n250 STARTTLS\r\n"))
        self.assertFalse(offers_plain(b"250-host\r\n250 PLAINLY\r\n"))

    def test_noop_samples_split_at_the_burst(self):
        """NOOPs sent before the burst are the idle figures, those sent during
        it the target's."""
        samples = [(1.0, 0.001), (2.0, 0.002), (3.0, 0.030), (5.0, 0.004)]
        self.assertEqual(split_samples(samples, 2.0, 4.0), ([0.001], [0.002, 0.030]))


class RoundDirectoryTests(SynchronousTestCase):
    """Round directories are removed after the last round, not between rounds,
    and each round starts after a sync and a pause: deleting thousands of
    files makes the next file creations dearer (ext4 skips freed inodes for
    a while), which would be charged to whichever system runs next."""

    def test_rounds_start_settled_and_directories_go_at_the_end(self):
        import contextlib
        import io

        import inject_vs_postfix as harness

        workdir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, workdir, True)
        seen = []

        class Peer:
            port, recipient, maildir_new = 1, "alice@example.com", workdir

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        def fake_round(system, round_no, port, recipient, target, load, **kw):
            [run] = workdir.iterdir()   # the run's directory holds the rounds
            seen.append(sorted(p.name.split("-")[1] + p.name.split("-")[2]
                               for p in run.iterdir()))
            return RoundResult(system, round_no, load.messages, load.messages,
                               load.messages, 1.0, 1.0)

        self.patch(harness, "make_peer", lambda *a, **kw: Peer())
        self.patch(harness, "run_round", fake_round)
        self.patch(harness, "preflight", lambda: "3.test")
        self.patch(harness, "indimail_preflight", lambda: None)
        self.patch(harness.os, "access", lambda *a: True)
        self.patch(harness.os, "sync", lambda: seen.append("sync"))
        self.patch(harness.time, "sleep", lambda s: seen.append(f"sleep {s:g}"))
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            status = harness.main(["--rounds", "2", "--messages", "10", "--settle", "7",
                                   "--workdir", str(workdir)])
        self.assertEqual(status, 0)
        settled = ["sync", "sleep 7"]
        self.assertEqual(seen, [*settled, ["indimail1"],
                                *settled, ["indimail1", "postfix1"],
                                *settled, ["indimail1", "postfix1", "postfix2"],
                                *settled, ["indimail1", "indimail2", "postfix1", "postfix2"]])
        self.assertEqual(list(workdir.iterdir()), [])

    def test_rounds_get_block_groups_of_their_own(self):
        """The run's directory is an Orlov top directory (where the file
        system has the flag, as this machine's ext4 does), so each round
        directory in it lands in a block group of its own."""
        import inject_vs_postfix as harness

        from indimail.queue.placement import is_top, mark_top

        workdir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, workdir, True)
        probe = workdir / "probe"
        probe.mkdir()
        supported = mark_top(probe)
        run = harness.run_directory(workdir)
        self.assertEqual(run.parent, workdir)
        self.assertTrue(run.name.startswith("bench-run-"))
        self.assertEqual(is_top(run), supported)
        if os.environ.get("CI") == "true":
            self.assertTrue(supported)
