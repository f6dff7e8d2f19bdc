"""qmail-qread: list the messages in every configured queue.

``qmail-qread [-calrst]``: ``-l`` local, ``-r`` remote (default both),
``-t`` todo, ``-a`` all three, ``-c`` counts, ``-s`` silent (counts only).
Per queue it prints ``processing queue <dir>``, the messages in upstream's
format, then a blank line; with ``-c`` per-queue and ``Total`` counts.
"""

from __future__ import annotations

import getopt
import sys

from ..queue.client import client_environment
from ..queue.readq import Counts, read_queue, read_todo, report_queues

USAGE = """qmail-read [-calrt]
\t-a - Display local, remote and todo Queues
\t-c - Display Counts
\t-l - Display local  Queue
\t-r - Display remote Queue
"""


def put_counts(out, prefix: str, counts: Counts, local: bool, remote: bool, todo: bool) -> None:
    if local:
        out.write(f"{prefix}Messages in local  queue: {counts.local}\n")
    if remote:
        out.write(f"{prefix}Messages in remote queue: {counts.remote}\n")
    out.write(f"{prefix}Messages in bounce queue: {counts.bounce}\n")
    if todo:
        out.write(f"{prefix}Messages in todo   queue: {counts.todo}\n")


def report(queues, out, err, *, local=True, remote=True, todo=False,
           counts=False, silent=False) -> Counts:
    total = Counts()
    for queue in queues:
        out.write(f"processing queue {queue.path}\n")
        mine = Counts()
        for entry in read_queue(queue, local, remote, warn=lambda m: err.write(m + "\n")):
            if entry.bouncing:
                mine.bounce += 1
            for channel, _addr, _done in entry.recipients:
                if channel == "local":
                    mine.local += 1
                else:
                    mine.remote += 1
            if not silent:
                for line in entry.lines():
                    out.write(line + "\n")
        if todo or counts:
            for entry in read_todo(queue, warn=lambda m: err.write(m + "\n")):
                mine.todo += len(entry.recipients)
                if not silent:
                    for line in entry.lines():
                        out.write(line + "\n")
        if counts:
            put_counts(out, "", mine, local, remote, todo)
        out.write("\n")
        total.add(mine)
    if counts:
        put_counts(out, "Total ", total, local, remote, todo)
    return total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts, _args = getopt.getopt(argv, "calrst")
    except getopt.GetoptError:
        sys.stdout.write(USAGE)
        sys.exit(1)
    flags = {opt[1] for opt, _ in opts}
    local = "l" in flags or "a" in flags
    remote = "r" in flags or "a" in flags
    todo = "t" in flags or "a" in flags
    if not (local or remote or todo):
        local = remote = True
    home, env = client_environment()
    queues = report_queues(env, home.queue_base)
    report(queues, sys.stdout, sys.stderr, local=local, remote=remote, todo=todo,
           counts="c" in flags, silent="s" in flags)
    sys.stdout.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
