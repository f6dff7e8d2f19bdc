"""qmail-tcpok: clear qmail-remote's table of addresses that timed out,
in every queue, so the next deliveries try all addresses again."""

from __future__ import annotations

import sys

from ..delivery.tcpto import TcpTimeouts
from ..queue.client import client_environment
from ..queue.readq import report_queues


def main(argv: list[str] | None = None) -> int:
    home, env = client_environment()
    for queue in report_queues(env, home.queue_base):
        try:
            TcpTimeouts(queue.lock_dir / "tcpto").clear()
        except OSError as exc:
            sys.stderr.write(f"qmail-tcpok: fatal: unable to clear {queue.path}/lock/tcpto: "
                             f"{exc}\n")
            sys.exit(111)
    sys.exit(0)


if __name__ == "__main__":
    main()
