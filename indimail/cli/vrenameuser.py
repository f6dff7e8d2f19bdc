"""vrenameuser: give a virtual user a new name (possibly in another domain)."""

from __future__ import annotations

from indimail.vdomain.admin import run_cli
from indimail.vdomain.modify import rename_user

USAGE = "usage: vrenameuser [--home dir] [-v] old_email_address new_email_address"


async def _body(admin, opts, args):
    if len(args) != 2:
        raise SystemExit(USAGE)
    await rename_user(admin, args[0], args[1])
    return (args[0].strip().lower(), args[1].strip().lower())


def main(argv=None) -> None:
    run_cli("vrenameuser", USAGE, "v", _body, argv)


if __name__ == "__main__":
    main()
