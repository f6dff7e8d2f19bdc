"""vdeluser: remove a virtual user and its mail directory."""

from __future__ import annotations

from indimail.vdomain.admin import run_cli

USAGE = "usage: vdeluser [--home dir] user@domain"


async def _body(admin, opts, args):
    if len(args) != 1:
        raise SystemExit(USAGE)
    return (await admin.delete_user(args[0])).address


def main(argv=None) -> None:
    run_cli("vdeluser", USAGE, "", _body, argv)


if __name__ == "__main__":
    main()
