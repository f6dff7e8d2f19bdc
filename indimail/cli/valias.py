"""valias: a virtual domain's aliases (``-s`` show, ``-i`` insert, ``-d``
delete, ``-u old -i new`` update, ``-S`` which aliases point at an address)."""

from __future__ import annotations

import sys

from indimail.vdomain.admin import AdminError, run_cli

USAGE = """usage: valias [--home dir] [options] [email_address | domain_name]
options: -v ( verbose )
         -s ( show aliases )
         -S ( track aliases )
         -d alias_line (delete alias line)
         -i alias_line (insert alias line)
         -u old_alias_line -i new_alias_line (update alias line)"""


async def _real(admin, domain: str) -> str:
    real = await admin.store.real_domain(domain)
    if real is None:
        raise AdminError(f"{domain}: No such domain")
    return real


def _show(pairs, domain: str) -> None:
    sys.stdout.write("".join(f"{alias}@{domain} -> {line}\n" for alias, line in pairs))


async def _body(admin, opts, args):
    action, line, old = "show", None, None
    for key, value in opts:
        if key == "-s":
            action = "show"
        elif key == "-S":
            action = "track"
        elif key == "-d":
            action, line = "delete", value
        elif key == "-u":
            action, old = "update", value
        elif key == "-i":
            if action != "update":
                action = "insert"
            line = value
        if key in ("-i", "-u") and not value:
            raise AdminError("You cannot have an empty alias line")
    target = args[0].strip() if args else ""
    if action != "show" and not target:
        raise AdminError("must supply alias email address or a domain name")
    alias, at, domain = target.rpartition("@")
    if action == "show":
        if not target:
            for name in await admin.store.list_domains():
                _show(await admin.store.list_aliases(name), name)
        elif not at:
            real = await _real(admin, target.lower())
            _show(await admin.store.list_aliases(real), real)
        else:
            real = await _real(admin, domain.lower())
            _show([(alias.lower(), ln) for ln in
                   await admin.store.alias_lines(alias, real)], real)
        return 0
    if action == "track":
        for name, dom in await admin.store.aliases_to(target):
            sys.stdout.write(f"{name}@{dom} -> {target}\n")
        return 0
    if not at or not alias:
        raise AdminError(f"{target}: No domain specified")
    real = await _real(admin, domain.lower())
    if action == "insert":
        if not await admin.store.add_alias_line(alias, real, line):
            raise AdminError(f"{alias.lower()}@{real}: alias line {line} exists")
    elif action == "delete":
        if not await admin.store.delete_alias(alias, real, line):
            raise AdminError(f"{alias.lower()}@{real}: no alias line {line}")
    elif action == "update":
        if line is None:
            raise SystemExit(USAGE)
        if not await admin.store.update_alias_line(alias, real, old, line):
            raise AdminError(f"{alias.lower()}@{real}: no alias line {old}")
    return 0


def main(argv=None) -> None:
    run_cli("valias", USAGE, "vmsSu:d:i:", _body, argv)


if __name__ == "__main__":
    main()
