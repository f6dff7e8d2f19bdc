"""qmail-tcpto: print qmail-remote's table of addresses that timed out
(``lock/tcpto`` of each queue), in upstream's words, on stderr."""

from __future__ import annotations

import sys
import time

from ..delivery.tcpto import TcpTimeouts, format_entry
from ..queue.client import client_environment
from ..queue.readq import report_queues


def report(queues, out, now: int) -> int:
    """Print every queue's entries; the number printed."""
    count = 0
    for queue in queues:
        for entry in TcpTimeouts(queue.lock_dir / "tcpto").entries():
            out.write(format_entry(entry, now) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    home, env = client_environment()
    try:
        report(report_queues(env, home.queue_base), sys.stderr, int(time.time()))
    except OSError as exc:
        sys.stderr.write(f"qmail-tcpto: fatal: unable to read tcpto: {exc}\n")
        sys.exit(111)
    sys.stderr.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
