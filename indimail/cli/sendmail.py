"""sendmail: the Sendmail command line, mapped onto qmail-inject.

``-f sender``, ``-F fullname``, ``-t`` (recipients from To/Cc/Bcc plus the
arguments; Bcc is removed), ``-i``/``-oi`` (a lone ``.`` does not end the
input; without them it does, as in Sendmail), ``-bp`` (list the queue, as
qmail-qread).  Other Sendmail flags are accepted and ignored, as upstream
does.
"""

from __future__ import annotations

import getopt
import sys

from ..queue.client import client_environment
from .qmail_inject import inject

FATAL = "sendmail: fatal: "
# flags taking an argument in Sendmail's syntax (ignored unless handled)
_OPTS = "f:F:o:B:b:e:h:N:R:V:X:C:L:r:p:O:tivmnqUGA:"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    argv = [a for a in argv if not (a.startswith("-q") and len(a) > 2)]
    try:
        opts, args = getopt.getopt(argv, _OPTS)
    except getopt.GetoptError as e:
        sys.stderr.write(f"{FATAL}{e}\n")
        sys.exit(100)
    sender = fullname = None
    from_headers = False
    dot_ends = True
    for opt, val in opts:
        if opt in ("-f", "-r"):
            sender = val
        elif opt == "-F":
            fullname = val
        elif opt == "-t":
            from_headers = True
        elif opt == "-i" or (opt == "-o" and val == "i"):
            dot_ends = False
        elif opt == "-b":
            if val == "p":
                from .qmail_qread import main as qread
                return qread([])
            if val not in ("m", ""):
                sys.stderr.write(f"{FATAL}-b{val} is not supported\n")
                sys.exit(100)
    try:
        home, env = client_environment()
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{FATAL}unable to read configuration: {e}\n")
        sys.exit(111)
    sys.exit(inject(home, env, sys.stdin.buffer, args, mode="H" if from_headers else "a",
                    sender=sender, fullname=fullname, dot_ends=dot_ends, prog="sendmail"))


if __name__ == "__main__":
    main()
