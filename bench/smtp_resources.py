"""Resource figures of the SMTP service (issue 3 §4): idle sessions, greeting
latency under them, and the memory cost of one large message.

The service is started the way the README's first command does —
``indimail init`` for a temporary home, then ``twistd -n indimail`` — by
:class:`indimail_peer.IndimailPeer`.  Then:

1. RSS of the server (every process of twistd's process group) at rest;
2. *sessions* (1,000) concurrent SMTP sessions, each greeted and then idle
   (RLIMIT_NOFILE is raised first; twistd inherits it): total RSS, and
   the time from connect to the complete ``220`` for *probes* new sessions
   opened meanwhile;
3. the idle sessions closed, one small message sent and delivered (so
   lazily loaded code is not counted), the peak-RSS counter reset
   (``/proc/PID/clear_refs``), one *size* (50 MB) message sent and
   delivered to the Maildir: the peak RSS minus the RSS before it.

Targets: total RSS with the idle sessions < 200 MB, greeting < 100 ms (the
slowest probe), RSS increase for the large message < 20 MB.  Prints the
figures and PASS/FAIL per target; ``--json`` prints them as JSON.  Exit 0
when every target passed, 1 when one failed, 2 when the run itself failed.

    /tmp/venv/bin/python bench/smtp_resources.py [--sessions 1000] [--size-mb 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import smtplib
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from indimail_peer import IndimailPeer  # noqa: E402
from load import count_files  # noqa: E402
from ready import free_port  # noqa: E402

MB = 1024 * 1024
TARGET_IDLE_RSS_MB = 200.0
TARGET_GREETING_MS = 100.0
TARGET_MESSAGE_RSS_MB = 20.0


# -- /proc ---------------------------------------------------------------------------
def parse_status(text: str) -> dict[str, int]:
    """The ``Vm*``/``Rss*`` lines of /proc/PID/status, in bytes."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[name] = int(parts[0]) * 1024
    return out


def process_group(pgid: int, proc: Path = Path("/proc")) -> list[int]:
    """The pids whose process group is *pgid* (twistd and its children)."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:   # the process went away
            continue
        fields = stat[stat.rfind(")") + 2:].split()   # after "pid (comm) "
        if len(fields) > 2 and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return sorted(pids)


def group_memory(pgid: int, key: str = "VmRSS", proc: Path = Path("/proc"),
                 source: str = "status") -> int:
    """Sum of *key* (VmRSS, VmHWM; ``Pss`` from ``smaps_rollup``) over the
    process group, in bytes."""
    total = 0
    for pid in process_group(pgid, proc):
        try:
            total += parse_status((proc / str(pid) / source).read_text()).get(key, 0)
        except OSError:
            continue
    return total


def group_pss(pgid: int, proc: Path = Path("/proc")) -> int:
    """Proportional set size of the group: shared library pages counted once."""
    return group_memory(pgid, "Pss", proc, "smaps_rollup")


def reset_peak(pgid: int, proc: Path = Path("/proc")) -> bool:
    """Reset VmHWM of the group (``echo 5 > clear_refs``); False if not allowed."""
    ok = True
    for pid in process_group(pgid, proc):
        try:
            (proc / str(pid) / "clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def raise_nofile(want: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards *want* (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


# -- SMTP client side ----------------------------------------------------------------
def read_reply(sock: socket.socket) -> bytes:
    """One complete (possibly multi-line) reply."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(x) > 3 and x[3:4] == b" " for x in lines[:-1]):
            return data


def open_session(port: int, timeout: float = 30.0) -> tuple[socket.socket, float]:
    """Connect and read the greeting; (socket, seconds from connect to 220)."""
    start = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    greeting = read_reply(sock)
    elapsed = time.perf_counter() - start
    if not greeting.startswith(b"220"):
        sock.close()
        raise ConnectionError(f"unexpected greeting {greeting!r}")
    return sock, elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def message_body(size: int) -> bytes:
    """About *size* bytes of 78-character CRLF lines with a Subject."""
    line = (b"0123456789" * 8)[:76] + b"\r\n"
    return b"Subject: large\r\n\r\n" + line * (size // len(line))


def wait_delivered(maildir_new: Path, count: int, timeout: float) -> float:
    """Wait until *count* files are in Maildir/new; seconds waited."""
    start = time.monotonic()
    while count_files(maildir_new) < count:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{maildir_new}: fewer than {count} messages after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - start


# -- figures -------------------------------------------------------------------------
@dataclass
class Figures:
    sessions: int = 0
    processes: int = 0
    rss_start_mb: float = 0.0
    rss_idle_mb: float = 0.0
    pss_start_mb: float = 0.0
    pss_idle_mb: float = 0.0
    per_session_kb: float = 0.0
    greeting_ms: list[float] = field(default_factory=list)
    message_mb: float = 0.0
    rss_before_message_mb: float = 0.0
    rss_peak_message_mb: float = 0.0
    rss_after_message_mb: float = 0.0
    message_seconds: float = 0.0
    peak_from: str = "VmHWM"

    @property
    def greeting_max_ms(self) -> float:
        return max(self.greeting_ms, default=0.0)

    @property
    def message_increase_mb(self) -> float:
        return self.rss_peak_message_mb - self.rss_before_message_mb


def verdicts(f: Figures) -> list[tuple[str, str, bool]]:
    """(target, measured, passed) per target."""
    return [
        (f"total RSS with {f.sessions} idle sessions < {TARGET_IDLE_RSS_MB:.0f} MB",
         f"{f.rss_idle_mb:.1f} MB", f.rss_idle_mb < TARGET_IDLE_RSS_MB),
        (f"greeting of a new session meanwhile < {TARGET_GREETING_MS:.0f} ms (slowest)",
         f"{f.greeting_max_ms:.1f} ms", f.greeting_max_ms < TARGET_GREETING_MS),
        (f"RSS increase for a {f.message_mb:.0f} MB message < {TARGET_MESSAGE_RSS_MB:.0f} MB",
         f"{f.message_increase_mb:.1f} MB", f.message_increase_mb < TARGET_MESSAGE_RSS_MB),
    ]


def render(f: Figures) -> str:
    lines = [
        f"server RSS at rest:                {f.rss_start_mb:8.1f} MB "
        f"({f.processes} process{'es' if f.processes != 1 else ''}; PSS {f.pss_start_mb:.1f} MB)",
        f"server RSS with {f.sessions:5d} idle sessions: {f.rss_idle_mb:8.1f} MB "
        f"({f.per_session_kb:.1f} kB per session; PSS {f.pss_idle_mb:.1f} MB)",
        f"greeting latency meanwhile:        p50 {percentile(f.greeting_ms, 50):.1f} ms, "
        f"p90 {percentile(f.greeting_ms, 90):.1f} ms, max {f.greeting_max_ms:.1f} ms "
        f"({len(f.greeting_ms)} probes)",
        f"{f.message_mb:.0f} MB message: RSS before {f.rss_before_message_mb:.1f} MB, "
        f"peak {f.rss_peak_message_mb:.1f} MB ({f.peak_from}), after "
        f"{f.rss_after_message_mb:.1f} MB; sent and delivered in {f.message_seconds:.1f} s",
        "",
    ]
    for target, measured, passed in verdicts(f):
        lines.append(f"{'PASS' if passed else 'FAIL'}  {target}: {measured}")
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------
class PeakSampler:
    """Fallback when clear_refs is not writable: poll RSS for its maximum."""

    def __init__(self, pgid: int):
        self.pgid = pgid
        self.peak = 0

    def sample(self) -> None:
        self.peak = max(self.peak, group_memory(self.pgid))


def send(port: int, body: bytes, recipient: str, sampler: PeakSampler | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=600) as client:
        client.ehlo("bench.example")
        client.sendmail("bench@example.org", [recipient], body)
    if sampler is not None:
        sampler.sample()


def measure(peer: IndimailPeer, args: argparse.Namespace) -> Figures:
    pgid = peer._proc.pid
    f = Figures(sessions=args.sessions, message_mb=args.size_mb)
    time.sleep(args.settle)
    f.rss_start_mb = group_memory(pgid) / MB
    f.pss_start_mb = group_pss(pgid) / MB
    f.processes = len(process_group(pgid))

    sessions = []
    try:
        for _ in range(args.sessions):
            sock, _ = open_session(peer.port)
            sessions.append(sock)
        time.sleep(args.settle)
        f.rss_idle_mb = group_memory(pgid) / MB
        f.pss_idle_mb = group_pss(pgid) / MB
        f.per_session_kb = (f.rss_idle_mb - f.rss_start_mb) * 1024 / max(1, args.sessions)
        for _ in range(args.probes):
            sock, elapsed = open_session(peer.port)
            f.greeting_ms.append(elapsed * 1000)
            sock.sendall(b"QUIT\r\n")
            sock.close()
            time.sleep(0.02)
    finally:
        for sock in sessions:
            sock.close()
    time.sleep(args.settle)

    # a small message first: code loaded on first use is not the large message's cost
    send(peer.port, message_body(4096), peer.recipient)
    wait_delivered(peer.maildir_new, 1, args.timeout)
    time.sleep(args.settle)
    f.rss_before_message_mb = group_memory(pgid) / MB
    exact = reset_peak(pgid)
    sampler = None if exact else PeakSampler(pgid)
    if sampler is not None:
        f.peak_from = "sampled VmRSS"
    body = message_body(int(args.size_mb * MB))
    start = time.monotonic()
    if sampler is None:
        send(peer.port, body, peer.recipient)
        wait_delivered(peer.maildir_new, 2, args.timeout)
    else:
        done = threading.Event()

        def poll():
            while not done.is_set():
                sampler.sample()
                time.sleep(0.01)
        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            send(peer.port, body, peer.recipient)
            wait_delivered(peer.maildir_new, 2, args.timeout)
        finally:
            done.set()
            thread.join()
    f.message_seconds = time.monotonic() - start
    largest = max((e.stat().st_size for e in os.scandir(peer.maildir_new)), default=0)
    stored = len(body) - body.count(b"\r\n")   # the queue keeps LF line ends
    if largest < stored:
        raise RuntimeError(f"the delivered message has {largest} bytes, expected {stored}+")
    del body
    f.rss_peak_message_mb = (group_memory(pgid, "VmHWM") if sampler is None
                             else sampler.peak) / MB
    f.rss_after_message_mb = group_memory(pgid) / MB
    return f


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=1000, help="idle sessions (1000)")
    p.add_argument("--probes", type=int, default=20, help="new sessions timed meanwhile (20)")
    p.add_argument("--size-mb", type=float, default=50.0, help="large message size (50)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds to let the server settle before reading RSS (1)")
    p.add_argument("--timeout", type=float, default=300.0, help="delivery wait limit (300)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary home")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_nofile(2 * args.sessions + 256)
    if limit < args.sessions + 64:
        print(f"RLIMIT_NOFILE is {limit}: too low for {args.sessions} sessions", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="indimail-resources-"))
    try:
        with IndimailPeer(root, free_port()) as peer:
            try:
                figures = measure(peer, args)
            except Exception as exc:
                print(f"run failed: {exc}\n{peer.log_tail()}", file=sys.stderr)
                return 2
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        data = asdict(figures)
        data["verdicts"] = [{"target": t, "measured": m, "pass": ok}
                            for t, m, ok in verdicts(figures)]
        print(json.dumps(data, indent=2))
    else:
        print(render(figures))
    return 0 if all(ok for _, _, ok in verdicts(figures)) else 1


if __name__ == "__main__":
    sys.exit(main())
