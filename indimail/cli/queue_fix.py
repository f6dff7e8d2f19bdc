"""queue-fix: create or repair a queue directory.

``queue-fix [-N] [-v] [-s split] [-u uid] [-g gid] queue_dir``: ``-N``
only reports, ``-v`` prints every change in upstream's words, ``-s`` sets
the split (default ``CONFSPLIT`` or 151).  ``-u``/``-g`` (ours) set the
owner when run as root.  Exit 0 when the queue was already right, 1 when
something was (or, with ``-N``, would be) changed, 111 on failure.
"""

from __future__ import annotations

import getopt
import grp
import pwd
import sys
from pathlib import Path

from ..queue.client import client_environment
from ..queue.fix import queue_fix
from ..queue.layout import DEFAULT_SPLIT, QueueDir, split_from_env

WARN = "queue-fix: warn: "
FATAL = "queue-fix: fatal: "


def _usage() -> None:
    sys.stderr.write(f"{WARN}usage: queue-fix [-i | -N | -v] [-s split] queue_dir\n"
                     f"                 -s - queue split number (default {DEFAULT_SPLIT})\n"
                     "                 -N - Test Mode\n")
    sys.exit(100)


def _id(value: str, db) -> int:
    return int(value) if value.isdigit() else db(value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts, args = getopt.getopt(argv, "imNvrs:u:g:")
    except getopt.GetoptError:
        _usage()
    if len(args) != 1:
        _usage()
    _home, env = client_environment()
    split = split_from_env(env)
    verbose = dry_run = False
    uid = gid = None
    for opt, val in opts:
        if opt == "-N":
            dry_run = True
        elif opt == "-v":
            verbose = True
        elif opt == "-s":
            try:
                split = min(max(int(val), 1), DEFAULT_SPLIT)
            except ValueError:
                _usage()
        elif opt == "-u":
            uid = _id(val, lambda n: pwd.getpwnam(n).pw_uid)
        elif opt == "-g":
            gid = _id(val, lambda n: grp.getgrnam(n).gr_gid)
    queue = QueueDir(Path(args[0].rstrip("/") or "/"), split)
    try:
        changes = queue_fix(queue, uid, gid, dry_run=dry_run)
    except OSError as e:
        sys.stderr.write(f"{FATAL}{e}\n{WARN}Failed while checking directory structure.\n"
                         "Make sure the given queue exists and you have permission to access it.\n"
                         "Exiting...\n")
        sys.exit(111)
    if verbose:
        for line in changes:
            sys.stdout.write(line + "\n")
        sys.stdout.write("queue-fix finished...\n")
    sys.stdout.flush()
    sys.exit(1 if changes else 0)


if __name__ == "__main__":
    main()
