"""clearopensmtp: expire the relay table (POP-before-SMTP) past RELAY_CLEAR_MINUTES.

Run from cron every 30 minutes, as the seed says.  ``-s`` clears only the
relay table; ``-t`` (upstream: rebuild tcp.smtp.cdb from it) has nothing to do
here, since SMTP reads the relay table directly under CHECKRELAY."""

from __future__ import annotations

import os

from indimail.vdomain.admin import AdminError, run_cli
from indimail.vdomain.store import RELAY_CLEAR_MINUTES

USAGE = ("usage: clearopensmtp [--home dir] [options]\n"
         "options: -t (run updaterules)\n"
         "         -s (clear MySQL RELAY TABLE)")


async def _body(admin, opts, args):
    if args:
        raise SystemExit(USAGE)
    if ("-t", "") in opts and ("-s", "") not in opts:
        return 0
    text = os.environ.get("RELAY_CLEAR_MINUTES", "")
    try:
        minutes = int(text) if text.strip() else RELAY_CLEAR_MINUTES
    except ValueError:
        raise AdminError(f"invalid RELAY_CLEAR_MINUTES [{text}]", 100) from None
    await admin.store.clear_relay(admin.clock(), minutes)
    return 0


def main(argv=None) -> None:
    run_cli("clearopensmtp", USAGE, "ts", _body, argv)


if __name__ == "__main__":
    main()
