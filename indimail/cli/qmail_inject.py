"""qmail-inject: complete a message's header and queue it.

``qmail-inject [-aAhHn] [-f sender] [recipient ...]``: with ``-a`` the
recipients are the arguments only, ``-h`` the header only, ``-H`` both,
``-A`` (the default) the arguments when given, else the header.  ``-n``
prints the completed message instead of queueing it.  Exit 0, 100
(permanent) or 111 (temporary), as upstream.
"""

from __future__ import annotations

import getopt
import itertools
import sys
from typing import BinaryIO, Mapping

from ..config.control import ControlFiles
from ..queue.client import client_environment, enqueue_blocking
from ..queue.errors import QueueError
from ..queue.inject import (Identity, body_chunks, complete_header,
                            envelope_sender, header_recipients, read_header)

FATAL = "qmail-inject: fatal: "


def inject(home, env: Mapping[str, str], stdin: BinaryIO, args: list[str], *,
           mode: str = "A", sender: str | None = None, fullname: str | None = None,
           dot_ends: bool = False, print_only: bool = False, prog: str = "qmail-inject",
           stdout: BinaryIO | None = None, stderr=None) -> int:
    """Read a message from *stdin*, complete it and queue it (or print it)."""
    stderr = stderr or sys.stderr
    fatal = f"{prog}: fatal: "
    ident = Identity.from_env(env, ControlFiles(home.control))
    header, first, ended = read_header(stdin, dot_ends)
    wanted_header = header_recipients(header)
    if mode == "a":
        recipients = list(args)
    elif mode == "h":
        recipients = wanted_header
    elif mode == "H":
        recipients = wanted_header + list(args)
    else:
        recipients = list(args) if args else wanted_header
    recipients = [ident.qualify(r) for r in recipients if r.strip()]
    complete_header(header, ident, flags=env.get("QMAILINJECT", ""), fullname=fullname)
    env_sender = envelope_sender(env, ident, sender)
    if env_sender:
        env_sender = ident.qualify(env_sender)
    head = header.to_bytes() + (first if first is not None else b"\n")
    body = iter(()) if ended or first is None else body_chunks(stdin, dot_ends)
    chunks = itertools.chain([head], body)
    if print_only:
        out = stdout or sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return 0
    if not recipients:
        stderr.write(f"{fatal}no recipients\n")
        return 100
    try:
        enqueue_blocking(home, env, env_sender, recipients, chunks)
    except QueueError as e:
        stderr.write(f"{fatal}{e.text}\n")
        return 111 if e.temporary else 100
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts, args = getopt.getopt(argv, "aAhHnNf:F:")
    except getopt.GetoptError as e:
        sys.stderr.write(f"{FATAL}{e}\nusage: qmail-inject [-aAhHn] [-f sender] [recipient ...]\n")
        sys.exit(100)
    mode, sender, fullname, print_only = "A", None, None, False
    for opt, val in opts:
        if opt in ("-a", "-A", "-h", "-H"):
            mode = opt[1]
        elif opt == "-n":
            print_only = True
        elif opt == "-N":
            print_only = False
        elif opt == "-f":
            sender = val
        elif opt == "-F":
            fullname = val
    try:
        home, env = client_environment()
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{FATAL}unable to read configuration: {e}\n")
        sys.exit(111)
    sys.exit(inject(home, env, sys.stdin.buffer, args, mode=mode, sender=sender,
                    fullname=fullname, print_only=print_only))


if __name__ == "__main__":
    main()
