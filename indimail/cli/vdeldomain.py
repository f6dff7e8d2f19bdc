"""vdeldomain: remove a virtual domain, its users and its control lines."""

from __future__ import annotations

from indimail.vdomain.admin import run_cli

USAGE = "usage: vdeldomain [--home dir] domain"


async def _body(admin, opts, args):
    if len(args) != 1:
        raise SystemExit(USAGE)
    await admin.delete_domain(args[0])
    return args[0].strip().lower()


def main(argv=None) -> None:
    run_cli("vdeldomain", USAGE, "", _body, argv)


if __name__ == "__main__":
    main()
