"""vuserinfo: show a virtual user in IndiMail's layout (``-n -p -u -g -c -d -q`` pick fields)."""

from __future__ import annotations

import sys

from indimail.vdomain.admin import run_cli

USAGE = "usage: vuserinfo [--home dir] [-anpugcdq] user@domain"
FIELDS = {"-n": "name", "-p": "passwd", "-u": "uid", "-g": "gid", "-c": "gecos",
          "-d": "dir", "-q": ("quota", "curr quota")}


def select(text: str, opts) -> str:
    """The lines of the fields asked for (all when none or ``-a``)."""
    keys = [k for k, _ in opts]
    if not keys or "-a" in keys:
        return text
    wanted = set()
    for key in keys:
        names = FIELDS[key]
        wanted.update((names,) if isinstance(names, str) else names)
    out, current = [], None
    for line in text.splitlines(keepends=True):
        if not line.startswith(" "):
            current = line.split(":", 1)[0].strip()
        if current in wanted:
            out.append(line)
    return "".join(out)


async def _body(admin, opts, args):
    if len(args) != 1:
        raise SystemExit(USAGE)
    sys.stdout.write(select(await admin.user_info(args[0]), opts))


def main(argv=None) -> None:
    run_cli("vuserinfo", USAGE, "anpugcdq", _body, argv)


if __name__ == "__main__":
    main()
