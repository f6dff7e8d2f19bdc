"""vsetuserquota: set a virtual user's quota (bytes, k/m/g, NOQUOTA, ``,count``)."""

from __future__ import annotations

import os

from indimail.vdomain.admin import run_cli
from indimail.vdomain.modify import set_user_quota

USAGE = "usage: vsetuserquota [--home dir] [-v] email_address quota_in_bytes"


async def _body(admin, opts, args):
    if len(args) != 2:
        raise SystemExit(USAGE)
    await set_user_quota(admin, args[0], args[1], env=os.environ)
    return 0


def main(argv=None) -> None:
    run_cli("vsetuserquota", USAGE, "v", _body, argv)


if __name__ == "__main__":
    main()
