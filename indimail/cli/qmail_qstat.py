"""qmail-qstat: how many messages are queued, and how many not yet
preprocessed.  One queue prints upstream's two lines; several queues print
them per queue (after ``processing queue <dir>``) and then ``Total`` lines.
"""

from __future__ import annotations

import sys

from ..queue.client import client_environment
from ..queue.readq import qstat, report_queues


def report(queues, out) -> tuple[int, int]:
    if len(queues) == 1:
        mess, todo = qstat(queues[0])
        out.write(f"messages in queue: {mess}\n"
                  f"messages in queue but not yet preprocessed: {todo}\n")
        return mess, todo
    total_mess = total_todo = 0
    for queue in queues:
        mess, todo = qstat(queue)
        total_mess += mess
        total_todo += todo
        out.write(f"processing queue {queue.path}\n"
                  f"messages in queue: {mess}\n"
                  f"messages in queue but not yet preprocessed: {todo}\n\n")
    out.write(f"Total messages in queue: {total_mess}\n"
              f"Total messages in queue but not yet preprocessed: {total_todo}\n")
    return total_mess, total_todo


def main(argv: list[str] | None = None) -> int:
    home, env = client_environment()
    report(report_queues(env, home.queue_base), sys.stdout)
    sys.stdout.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
