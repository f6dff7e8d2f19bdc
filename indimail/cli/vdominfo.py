"""vdominfo: show a virtual domain (or all of them) as IndiMail prints it."""

from __future__ import annotations

import os
import sys

from indimail.cli.vadddomain import _version
from indimail.vdomain.admin import run_cli
from indimail.vdomain.dominfo import FIELDS, render_vdominfo

USAGE = """usage: vdominfo [--home dir] [options] [domain]
options: -V (print version number)
         -a (display all fields, this is the default)
         -n (display domain name)
         -u (display uid field)
         -g (display gid field)
         -d (display domain directory)
         -b (display user's base directory)
         -t (display total users)
         -l (display alias domains)
         -p (display smtp ports)"""


def selected_fields(opts) -> frozenset[str] | None:
    """The fields *opts* ask for; None for all.  As upstream, ``-a`` shows
    everything until a later field option narrows the display again."""
    fields: set[str] = set()
    everything = True
    for key, _ in opts:
        if key == "-a":
            everything = True
        elif key in FIELDS:
            fields.add(FIELDS[key])
            everything = False
    return None if everything else frozenset(fields)


async def _body(admin, opts, args):
    if any(key == "-V" for key, _ in opts):
        sys.stdout.write(f"vdominfo: version {_version()}\n")
        return 0
    if len(args) > 1:
        raise SystemExit(USAGE)
    fields = selected_fields(opts)
    for info in await admin.domain_info(args[0] if args else None, env=os.environ):
        sys.stdout.write(render_vdominfo(info, fields))


def main(argv=None) -> None:
    run_cli("vdominfo", USAGE, "Vanugdbtlp", _body, argv)


if __name__ == "__main__":
    main()
