"""vdominfo: show a virtual domain (or all of them) as IndiMail prints it."""

from __future__ import annotations

import sys

from indimail.vdomain.admin import run_cli

USAGE = "usage: vdominfo [--home dir] [domain]"


async def _body(admin, opts, args):
    if len(args) > 1:
        raise SystemExit(USAGE)
    for info in await admin.domain_info(args[0] if args else None):
        sys.stdout.write(info.render())


def main(argv=None) -> None:
    run_cli("vdominfo", USAGE, "", _body, argv)


if __name__ == "__main__":
    main()
