"""vfilter: vdelivermail with the vfilter rules applied first.

``.qmail-default`` names it as it names vdelivermail (``| vfilter ''
bounce-no-mailbox``; ``vmoddomain -f 1 -h ...`` writes that line); the
delivery engine runs it in-process, this command runs it as qmail-local
runs a program."""

from __future__ import annotations

import sys

from indimail.cli.vdelivermail import main as _vdelivermail_main


def main(argv=None) -> None:
    _vdelivermail_main(sys.argv[1:] if argv is None else argv, prog="vfilter")


if __name__ == "__main__":
    main()
