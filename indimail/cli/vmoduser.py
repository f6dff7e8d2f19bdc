"""vmoduser: change a virtual user's gecos, password, quota and pw_gid flags
(upstream's options; ``-m``/``-C`` choose the password form as for vpasswd).
``-l`` sets or removes the user's vacation and does nothing else, as upstream."""

from __future__ import annotations

import os
import sys

from indimail.vdomain.admin import run_cli
from indimail.vdomain.modify import modify_user, parse_vmoduser
from indimail.vdomain.vacation import vacation

USAGE = """usage: vmoduser [--home dir] [options] email_addr
options: -v                       (verbose)
         -n                       (Inactive<->Active Toggle)
         -q quota                 (set quota to quota bytes, +/- to increase/decrease curr value)
         -c comment               (set the comment/gecos field)
         -P passwd                (set the password field)
         -e encrypted_passwd      (set the encrypted password field)
         -m SCRAM-SHA-1|SCRAM-SHA-256 (store -P as a SCRAM form)
         -C                       (keep a CRAM-usable secret with -P)
         -D date format           (Delivery to a Date Folder)
         -l vacation_message_file (sets up Auto Responder)
                                  (some special values for vacation_message_file)
                                  ('-' to remove vacation, '+' to take mesage from stdin)
the following options are bit flags in the gid int field
         -t ( toggle bit flags in the gid int field for below operations )
         -u ( set no dialup flag )
         -d ( set no password changing flag )
         -p ( set no pop access flag )
         -w ( set no web mail access flag )
         -s ( set no smtp access flag )
         -i ( set no imap access flag )
         -b ( set bounce mail flag )
         -r ( set no external relay flag )
         -o ( set domain limit override privileges)
         -a ( grant administrator privileges)
         -0 ( set V_USER0 flag )
         -1 ( set V_USER1 flag )
         -2 ( set V_USER2 flag )
         -3 ( set V_USER3 flag )
         -x ( clear all flags )"""


_TAKES_VALUE = set("Dcqe" "P" "m")


async def _body(admin, opts, args):
    if len(args) != 1:
        raise SystemExit(USAGE)
    given = dict(opts)
    if "-l" in given:           # upstream returns add_vacation()'s status, no handle
        await vacation(admin, args[0], given["-l"], read_stdin=sys.stdin.buffer.read,
                       out=sys.stdout)
        return 0
    change = parse_vmoduser(opts)
    await modify_user(admin, args[0], change, env=os.environ)
    handle_args: list[str] = []   # upstream hands the handle all of its arguments
    for key, value in opts:
        handle_args += [key, value] if key[1:] in _TAKES_VALUE else [key]
    return tuple(handle_args + list(args))


def main(argv=None) -> None:
    run_cli("vmoduser", USAGE, "avutnxD:c:q:dpwisobr0123e:l:P:m:C", _body, argv)


if __name__ == "__main__":
    main()
