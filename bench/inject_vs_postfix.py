#!/usr/bin/env python3
"""Side-by-side SMTP benchmark: this project vs a private Postfix 3, same load.

Each round starts a fresh server (temp home, unprivileged loopback port), sends
smtp-source's load, times injection (until the last 250) and end-to-end (until
the last message is in the Maildir), then stops the server.  The systems
alternate which goes first in each round; medians and ratios are printed.

    /tmp/venv/bin/python bench/inject_vs_postfix.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from indimail_peer import IndimailError, IndimailPeer  # noqa: E402
from indimail_peer import preflight as indimail_preflight  # noqa: E402
from indimail.queue.placement import mark_top  # noqa: E402
from load import SMTP_SOURCE, Load, RoundResult, run_round  # noqa: E402
from postfix_peer import PostfixError, PostfixPeer, preflight  # noqa: E402
from ready import free_port  # noqa: E402
from sink import SinkPeer  # noqa: E402
from report import render_latency, render_rounds, render_table, summarise, to_json  # noqa: E402

SYSTEMS = ("indimail", "postfix")


SETTLE = 6.0   # seconds: more than ext4's 5 s memory of clean freed inodes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds per system (3)")
    p.add_argument("--messages", type=int, default=2000, help="messages per round")
    p.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions")
    p.add_argument("--size", type=int, default=2048, help="payload bytes per message")
    p.add_argument("--only", choices=SYSTEMS, help="run one system only")
    p.add_argument("--relay", action="store_true",
                   help="relay every message to Postfix's smtp-sink through a route "
                        "(smtproutes / relayhost) instead of delivering to a Maildir")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="give up on a round after this many seconds")
    p.add_argument("--stall", type=float, default=120.0,
                   help="give up when no delivery happened for this long after inject")
    p.add_argument("--no-syncdir", dest="syncdir", action="store_false",
                   help="USE_SYNCDIR=0 for indimail: no fsync of the todo directory "
                        "(our default fsyncs it; Postfix has no equivalent)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="parent of the per-round temp directories")
    p.add_argument("--keep", action="store_true", help="keep the temp directories")
    p.add_argument("--settle", type=float, default=SETTLE,
                   help=f"seconds to wait after a sync before each round ({SETTLE:g})")
    args = p.parse_args(argv)
    for name in ("rounds", "messages", "sessions", "size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive")
    if args.settle < 0:
        p.error("--settle must not be negative")
    return args


def make_peer(system: str, root: Path, args: argparse.Namespace,
              relay_port: int | None = None):
    port = free_port()
    if system == "postfix":
        return PostfixPeer(root, port, relay_port=relay_port)
    return IndimailPeer(root, port, syncdir=args.syncdir, relay_port=relay_port)


def settle(seconds: float) -> None:
    """Let the file system forget earlier rounds: ext4 without a journal skips
    inodes freed in the last 5 s, or 5 minutes while their inode table block
    is dirty, each time it makes a file, so a round that runs right after
    thousands of deletions (the previous round's queue files, or a removed
    directory) pays for them.  A sync writes those blocks back; after the
    pause every round starts from the same state."""
    os.sync()
    time.sleep(seconds)


def run_directory(workdir: Path | None) -> Path:
    """The parent of this run's round directories, marked as an Orlov top
    directory (``chattr +T``; best effort) so that ext4 puts each round
    directory, and so each round's files, in a block group of its own.

    Without it every round's files share the work directory's group.  On
    ext4 without a journal a file creation there steps over every inode
    freed in that group lately, and "lately" stretches to 5 minutes while
    the freed inode's table block is dirty, which new files in the same
    block keep making it: measured here, a file creation cost 18-30 us in
    an untouched group and 220-660 us in one where a few thousand files had
    been deleted minutes before, even after a sync and 7 seconds' pause.
    One system's round (its queue files come and go) would so be charged
    to the next round's file creations, whichever system runs it."""
    run = Path(tempfile.mkdtemp(prefix="bench-run-", dir=workdir))
    os.chmod(run, 0o755)   # Postfix's users must traverse it to their round
    mark_top(run)
    return run


def one_round(system: str, round_no: int, args: argparse.Namespace,
              load: Load, leftovers: list[Path], parent: Path | None = None) -> RoundResult:
    """Fresh server, one measured load, server stopped; its directory goes
    on *leftovers*, removed after the last round: deleting thousands of
    files taxes the next file creations on ext4 (freed inodes are skipped
    for a while), which would charge one round's clean-up to the next
    system's timing."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{system}-{round_no}-",
                                 dir=parent or args.workdir))
    if not args.keep:
        leftovers.append(root)
    sink = SinkPeer(root, free_port()) if args.relay else None
    peer = make_peer(system, root, args, sink.port if sink else None)
    try:
        if sink is not None:
            sink.start()
        with peer:
            target = sink.dump_dir if sink is not None else peer.maildir_new
            result = run_round(system, round_no, peer.port, peer.recipient,
                               target, load, timeout=args.timeout,
                               stall=args.stall)
            if result.error:
                tail = peer.log_tail(10)
                if tail:
                    print(f"--- {system} log tail ---\n{tail}", file=sys.stderr)
            return result
    except (PostfixError, IndimailError) as exc:
        return RoundResult(system, round_no, load.messages, 0, 0, None, None,
                           f"server failed: {exc}")
    finally:
        if sink is not None:
            sink.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    systems = [args.only] if args.only else list(SYSTEMS)
    if not os.access(SMTP_SOURCE, os.X_OK):
        print(f"{SMTP_SOURCE} not found (Debian package postfix)", file=sys.stderr)
        return 2
    if "indimail" in systems:
        try:
            indimail_preflight()
        except IndimailError as exc:
            print(f"indimail: {exc}", file=sys.stderr)
            return 2
    version = "n/a"
    if "postfix" in systems:
        try:
            version = preflight()
        except PostfixError as exc:
            print(f"postfix: {exc}", file=sys.stderr)
            return 2
    load = Load(args.messages, args.sessions, args.size)
    print(f"load: smtp-source -s {load.sessions} -m {load.messages} -l {load.size}"
          f"; Postfix {version}; {args.rounds} round(s)", file=sys.stderr)
    results: list[RoundResult] = []
    run = run_directory(args.workdir)
    leftovers: list[Path] = []
    try:
        for round_no in range(1, args.rounds + 1):
            order = systems if round_no % 2 else systems[::-1]
            for system in order:
                settle(args.settle)
                result = one_round(system, round_no, args, load, leftovers, run)
                results.append(result)
                print(render_rounds([result]), file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        if not results:
            return 130
    finally:
        for root in leftovers:
            shutil.rmtree(root, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    ours, theirs = summarise("indimail", results), summarise("postfix", results)
    params = {"messages": load.messages, "sessions": load.sessions,
              "size": load.size, "rounds": args.rounds, "postfix": version,
              "use_fsync": True, "use_syncdir": args.syncdir,
              "mode": "relay to smtp-sink" if args.relay else "Maildir"}
    if args.json:
        print(to_json(ours, theirs, results, params))
    else:
        header = (f"{load.messages} messages x {load.size} bytes, {load.sessions} "
                  f"sessions, medians of {args.rounds} round(s)"
                  + (", relayed to smtp-sink" if args.relay else ""))
        print(render_table(ours, theirs, header))
        print(render_latency(ours, theirs, load.sessions))
    return 0 if all(r.error is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
