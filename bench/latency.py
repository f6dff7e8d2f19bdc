#!/usr/bin/env python3
"""Delivery latency at light load: from the ``250`` of DATA to the file in the Maildir.

One message per second (``--rate``) over one SMTP session per message, to this
project and to a private Postfix 3 in the same run; each latency is the time
from the server's ``250`` until the message is a file in ``Maildir/new/``
(polled every millisecond).  Prints p50/p90/p99/max per system and checks the
targets of the delivery issue: p50 under 50 ms, p99 under 200 ms.

    /tmp/venv/bin/python bench/latency.py --messages 60
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import smtplib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from indimail_peer import IndimailPeer  # noqa: E402
from load import count_files  # noqa: E402
from postfix_peer import PostfixPeer  # noqa: E402
from ready import free_port  # noqa: E402

TARGETS = {"p50": 0.050, "p99": 0.200}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of *values* (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def measure(peer, messages: int, interval: float, timeout: float = 30.0) -> list[float]:
    """Send *messages*, one per *interval*; latency of each from 250 to Maildir."""
    latencies = []
    body = "Subject: latency\r\n\r\n" + "x" * 2000 + "\r\n"
    for n in range(messages):
        started = time.monotonic()
        before = count_files(peer.maildir_new)
        with smtplib.SMTP("127.0.0.1", peer.port, timeout=timeout) as client:
            client.sendmail("bench@example.org", [peer.recipient], body)
            acked = time.monotonic()
            while count_files(peer.maildir_new) <= before:
                if time.monotonic() - acked > timeout:
                    raise RuntimeError(f"message {n} not delivered within {timeout}s")
                time.sleep(0.001)
            latencies.append(time.monotonic() - acked)
        left = interval - (time.monotonic() - started)
        if left > 0:
            time.sleep(left)
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99), "max": max(latencies)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=60)
    p.add_argument("--rate", type=float, default=1.0, help="messages per second (1)")
    p.add_argument("--only", choices=("indimail", "postfix"))
    args = p.parse_args(argv)
    results = {}
    for system in [args.only] if args.only else ["indimail", "postfix"]:
        root = Path(tempfile.mkdtemp(prefix=f"latency-{system}-"))
        peer = (PostfixPeer(root, free_port()) if system == "postfix"
                else IndimailPeer(root, free_port()))
        try:
            with peer:
                measure(peer, 3, 0.2)                  # warm up: first-use costs
                results[system] = summary(measure(peer, args.messages, 1 / args.rate))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        s = results[system]
        print(f"{system:9} p50 {s['p50'] * 1000:7.1f} ms  p90 {s['p90'] * 1000:7.1f} ms  "
              f"p99 {s['p99'] * 1000:7.1f} ms  max {s['max'] * 1000:7.1f} ms", flush=True)
    ok = True
    if "indimail" in results:
        for name, limit in TARGETS.items():
            value = results["indimail"][name]
            verdict = "PASS" if value < limit else "FAIL"
            ok &= value < limit
            print(f"target indimail {name} < {limit * 1000:.0f} ms: {value * 1000:.1f} ms {verdict}")
    if len(results) == 2:
        for name in ("p50", "p99"):
            print(f"ratio indimail/postfix {name}: "
                  f"{results['indimail'][name] / results['postfix'][name]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
