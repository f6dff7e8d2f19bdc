"""vlimit: show (``-s``), set or delete (``-D``) a domain's limits (vlimits table)."""

from __future__ import annotations

import sys
import time

from indimail.vdomain.admin import AdminError, run_cli
from indimail.vdomain.limits import LimitError, apply_options, render

USAGE = """usage: vlimit [--home dir] [options] domain
options: -v ( display the indimail version number )
         -s ( show current settings )
         -D ( delete limits for this domain, i.e. switch to default limits)
         -e edate ( set domain   expiry date (ddmmyyyyHHMMSS) | -n no of days
         -t edate ( set password expiry date (ddmmyyyyHHMMSS) | -N no of days
         -Q quota ( set domain quota )
         -M count ( set domain max msg count )
         -q quota ( set default user quota )
         -m count ( set default user max msg count )
         -P count ( set max amount of pop accounts )
         -A count ( set max amount of aliases )
         -F count ( set max amount of forwards )
         -R count ( set max amount of autoresponders )
         -L count ( set max amount of mailing lists )
the following options are bit flags in the gid int field
         -g "flags"  (set flags, see below)
          gid flags:
            u ( set no dialup flag )
            d ( set no password changing flag )
            p ( set no pop access flag )
            s ( set no smtp access flag )
            w ( set no web mail access flag )
            i ( set no imap access flag )
            r ( set no external relay flag )
            x ( clear all flags )
the following options are bit flags for non postmaster admins
         -p "flags"  (set pop account flags)
         -a "flags"  (set alias flags)
         -f "flags"  (set forward flags)
         -r "flags"  (set autoresponder flags)
         -l "flags"  (set mailinglist flags)
         -u "flags"  (set mailinglist users flags)
         -o "flags"  (set mailinglist moderators flags)
         -x "flags"  (set domain  quota flags)
         -z "flags"  (set default quota flags)
         perm flags:
            a ( set deny all flag )
            c ( set deny create flag )
            m ( set deny modify flag )
            d ( set deny delete flag )"""


async def _body(admin, opts, args):
    if len(args) != 1:
        raise SystemExit(USAGE)
    domain = args[0].strip().lower()
    if await admin.store.real_domain(domain) != domain:
        raise AdminError(f"{domain}: No such domain")
    keys = [k for k, _ in opts]
    if "-D" in keys:
        if await admin.store.delete_limits(domain):
            sys.stdout.write("Limits deleted\n")
            return 0
        raise AdminError("failed to delete limits")
    settings = [(k, v) for k, v in opts if k not in ("-s", "-v", "-D")]
    limits = await admin.store.get_limits(domain)
    if settings:
        try:
            limits = apply_options(limits, settings, time.time())
        except LimitError as exc:
            raise AdminError(str(exc)) from None
        await admin.store.set_limits(limits)
    if "-s" in keys:
        sys.stdout.write(render(limits))
    return 0


def main(argv=None) -> None:
    run_cli("vlimit", USAGE, "vst:e:n:N:DQ:q:M:m:P:A:F:R:L:g:p:a:f:r:l:u:o:x:z:", _body, argv)


if __name__ == "__main__":
    main()
