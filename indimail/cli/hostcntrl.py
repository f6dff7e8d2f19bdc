"""hostcntrl: the users of a cluster who live on a given mail store (hostcntrl table)."""

from __future__ import annotations

import sys
import time

from indimail.vdomain.admin import AdminError, run_cli, split_address

USAGE = """usage: hostcntrl [--home dir] [options] emailid
options: -v        ( verbose )
         -l        ( List all hostcntrl entries )
         -s        ( show   hostcntrl entry )
         -d hostid ( remove hostcntrl entry )
         -i hostid ( insert hostcntrl entry )
         -m hostid ( modify hostcntrl entry )"""


def _ctime(stamp) -> str:
    return time.ctime(stamp) if stamp is not None else "?"


async def _body(admin, opts, args):
    action, hostid = None, None
    for key, value in opts:
        if key in ("-l", "-s"):
            action = key
        elif key in ("-d", "-i", "-m"):
            action, hostid = key, value
    if action is None:
        raise SystemExit(USAGE)
    store = admin.store
    if action == "-l":
        out = [f"{'User':<20} {'Domain':<20} {'Host ID':<9} {'IP Address':<15} Added On\n"]
        for name, domain, host, added in await store.mailstores():
            ip = await store.host_ip(host) or "????"
            out.append(f"{name:<20} {domain:<20} {host:<9} {ip:<15} {_ctime(added)}\n")
        sys.stdout.write("".join(out))
        return 0
    if len(args) != 1:
        raise AdminError("must supply emailid")
    name, domain = split_address(args[0])
    if action == "-s":
        row = await store.mailstore_row(name, domain)
        if row is None:
            return 1
        host, added = row
        ip = await store.host_ip(host) or "????"
        sys.stdout.write(f"{'Email':<25} {'HOST ID':<11} {'IP Address':<16} Added On\n"
                         f"{args[0]:<25} {host:<11} {ip:<16} {_ctime(added)}\n")
        return 0
    current = await store.mailstore(name, domain)
    if action == "-i":
        if current is not None:
            raise AdminError(f"duplicate entry {name}@{domain} host {hostid}")
        await store.set_mailstore(name, domain, hostid, now=admin.clock())
    elif action == "-m":
        if current is None:
            raise AdminError(f"{name}@{domain}: no hostcntrl entry")
        await store.set_mailstore(name, domain, hostid, now=admin.clock())
    elif action == "-d":
        if current is None or not await store.delete_mailstore(name, domain):
            raise AdminError(f"{name}@{domain}: no hostcntrl entry")
    return 0


def main(argv=None) -> None:
    run_cli("hostcntrl", USAGE, "vlsd:i:m:", _body, argv)


if __name__ == "__main__":
    main()
