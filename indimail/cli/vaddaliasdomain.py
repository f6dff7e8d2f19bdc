"""vaddaliasdomain: make a new domain name an alias of an existing domain."""

from __future__ import annotations

from indimail.vdomain.admin import run_cli
from indimail.vdomain.modify import add_alias_domain

USAGE = "usage: vaddaliasdomain [--home dir] [-v] new_domain old_domain"


async def _body(admin, opts, args):
    if len(args) != 2 or not all(args):
        raise SystemExit(USAGE)
    await add_alias_domain(admin, args[0], args[1])
    return (args[0].strip().lower(), args[1].strip().lower())   # the handle gets both


def main(argv=None) -> None:
    run_cli("vaddaliasdomain", USAGE, "v", _body, argv)


if __name__ == "__main__":
    main()
