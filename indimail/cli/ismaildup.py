"""ismaildup: drop a duplicate before handing the message to a program.

    ismaildup directory program [args]        (upstream's form)
    |ismaildup /usr/bin/maildirdeliver /home/manny/Maildir/   (the seed's form)

The message on stdin is discarded (exit 0, ``ismaildup: discarding duplicate
msg``) when ``ELIMINATE_DUPS`` is set and a message with the same header
(Received and Delivered-To lines aside) reached *directory* within
``DUPLICATE_INTERVAL`` seconds (900); otherwise *program* runs with the
message on its stdin.  In the seed's form the directory is the last argument.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from indimail.vdomain.vdelivermail import DUPLICATE_INTERVAL, _int, is_duplicate

USAGE = "USAGE: ismaildup directory program"


def split_args(args: list[str]) -> tuple[Path, list[str]]:
    """(dup directory, program argv) of either argument order."""
    first = args[0]
    if not os.path.isdir(first) and os.path.isfile(first) and os.access(first, os.X_OK):
        return Path(args[-1]), args
    return Path(first), args[1:]


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) < 2:
        sys.stderr.write(USAGE + "\n")
        sys.exit(100)
    directory, program = split_args(args)
    fd, path = tempfile.mkstemp(prefix="ismaildup.")
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out)
        if os.fstat(fd).st_size == 0:
            sys.stderr.write("ismaildup: discarding 0 size message\n")
            sys.exit(0)
        if os.environ.get("ELIMINATE_DUPS"):
            interval = _int(os.environ.get("DUPLICATE_INTERVAL"), DUPLICATE_INTERVAL)
            try:
                dup = is_duplicate(directory, Path(path), time.time(), interval)
            except OSError as exc:
                sys.stderr.write(f"ismaildup: {directory}: {exc.strerror}\n")
                sys.exit(111)
            if dup:
                sys.stderr.write("ismaildup: discarding duplicate msg\n")
                sys.exit(0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.dup2(fd, 0)
    finally:
        os.close(fd)
        os.unlink(path)
    try:
        os.execvp(program[0], program)
    except OSError as exc:
        sys.stderr.write(f"ismaildup: {program[0]}: {exc.strerror}\n")
        sys.exit(111)


if __name__ == "__main__":
    main()
