"""qmail-newu: compile ``users/assign`` into ``users/cdb`` for qmail-lspawn.

The directory is the argument, else ``$ASSIGNDIR``, else the home's
``users/``.  Records as upstream writes them: key ``!local\\0`` for an
``=local`` line and ``!prefix`` for a ``+prefix`` line (both lower-cased),
data the first six ``:``-separated fields joined by NULs (the sixth colon
and what follows dropped), and the key ``""`` holding every distinct last
character of the wildcard prefixes.  Written to ``cdb.tmp``, fsynced and
renamed over ``cdb``, so readers see the old or the new file, never half.
Any trouble exits 111 with ``qmail-newu: fatal: ...``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cdblib

from indimail.config.home import Home


class NewuError(Exception):
    """A fatal error, with upstream's text."""


def compile_assign(data: bytes) -> list[tuple[bytes, bytes]]:
    """The cdb records of an assign file, in file order, the wildchars
    record last.  Raises NewuError on upstream's format errors: a line
    without newline before the ``.`` line, a NUL, no colon or a colon
    first, fewer than six colons after the key."""
    records: list[tuple[bytes, bytes]] = []
    wildchars = bytearray()
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos:end + 1]
        if line.startswith(b"."):
            break
        if end < 0:
            raise NewuError("bad format in users/assign")
        pos = end + 1
        colon = line.find(b":")
        if b"\0" in line or colon <= 0:
            raise NewuError("bad format in users/assign")
        key = (b"!" + line[1:colon]).lower()
        if line[:1] == b"+":
            last = line[colon - 1]
            if colon >= 2 and last not in wildchars:
                wildchars.append(last)
        else:
            key += b"\0"
        fields = line[colon + 1:].split(b":", 6)
        if len(fields) < 7:
            raise NewuError("bad format in users/assign")
        records.append((key, b"\0".join(fields[:6])))
    records.append((b"", bytes(wildchars)))
    return records


def write_cdb(directory: Path, records: list[tuple[bytes, bytes]]) -> None:
    """cdb.tmp, fsync, rename to cdb (upstream's order)."""
    tmp, final = directory / "cdb.tmp", directory / "cdb"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        raise NewuError("unable to open users/cdb.tmp") from None
    try:
        with os.fdopen(fd, "wb") as f:
            with cdblib.Writer(f) as writer:
                for key, value in records:
                    writer.put(key, value)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        raise NewuError("unable to write users/cdb.tmp") from None
    try:
        os.rename(tmp, final)
    except OSError:
        raise NewuError("unable to move users/cdb.tmp to users/cdb") from None


def newu(directory: os.PathLike | str) -> None:
    """Build ``<directory>/cdb`` from ``<directory>/assign``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NewuError(f"unable to chdir to {directory}")
    try:
        data = (directory / "assign").read_bytes()
    except FileNotFoundError:
        raise NewuError("unable to open users/assign") from None
    except OSError:
        raise NewuError("unable to read users/assign") from None
    write_cdb(directory, compile_assign(data))


def users_dir(argv: list[str], env) -> Path:
    if len(argv) > 1:
        return Path(argv[1])
    if env.get("ASSIGNDIR"):
        return Path(env["ASSIGNDIR"])
    return Home.from_env(env=env).users


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    try:
        newu(users_dir(argv, os.environ))
    except NewuError as exc:
        sys.stderr.write(f"qmail-newu: fatal: {exc}\n")
        sys.stderr.flush()
        sys.exit(111)
    sys.exit(0)


if __name__ == "__main__":
    main()
