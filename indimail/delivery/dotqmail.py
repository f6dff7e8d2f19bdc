"""Dot-qmail files: which one applies to an address extension, and what its
lines say (qmail-local's ``qmesearch`` and command loop, reference §7).

Lookup for dash ``-`` and ext ``foo-bar``: ``.qmail-foo-bar``, then
``.qmail-foo-default``, then ``.qmail-default``; the extension is
lower-cased and dots become ``:``.  Lines: ``#`` comment, ``|cmd`` program,
``&addr`` (or a line starting with anything else) forward, ``/path`` or
``./path`` an mbox, or a Maildir when it ends in ``/``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from indimail.delivery.result import temporary
from indimail.diskio import read_to_end

WRITABLE = 0o002  # qmail's auto_patrn: group/world write bits that are refused

MAILDIR = "maildir"
MBOX = "mbox"
PROGRAM = "program"
FORWARD = "forward"
LIST = "list"
BRANCH = "branch"   # ``?label command``: jump to ``:label`` when command exits 99
LABEL = "label"     # ``:label``


def safe_ext(ext: str) -> str:
    """The extension as it appears in a file name: lower case, ``.`` → ``:``."""
    return ext.lower().replace(".", ":")


def search_order(dash: str, ext: str) -> list[tuple[str, str | None]]:
    """Candidate file names with the ``DEFAULT`` value each one sets."""
    safe = safe_ext(ext)
    first = ".qmail" + dash + safe
    first_default = None
    if len(safe) >= 7 and safe.endswith("default"):
        first_default = ext[len(safe) - 7:]
    names = [(first, first_default)]
    for i in range(len(safe), -1, -1):
        if i == 0 or safe[i - 1] == "-":
            names.append((".qmail" + dash + safe[:i] + "default", ext[i:]))
    return names


@dataclass(frozen=True)
class DotQmail:
    """The dot-qmail file that applies, its content, and what it implies."""

    path: Path
    content: bytes
    default: str | None       # the DEFAULT variable (matched -default part)
    forward_only: bool        # the file has its owner-x bit set


def find_dotqmail(home: os.PathLike | str, dash: str, ext: str,
                  as_user: tuple[int, int] | None = None) -> DotQmail | None:
    """The first existing candidate under *home*; blocking (run in a thread).

    *as_user* (uid, gid): a root process reads on behalf of that user, so a
    file the user could not read (e.g. a symlink to ``/etc/shadow``) is
    refused as qmail-local, running as the user, would find it."""
    home = os.fspath(home)
    for name, default in search_order(dash, ext):
        path = os.path.join(home, name)
        found = _open_regular(path, as_user)
        if found is not None:
            content, mode = found
            return DotQmail(Path(path), content, default, bool(mode & 0o100))
    return None


def exists(home: os.PathLike | str, name: str) -> bool:
    """qmail-local's ``qmeox``: whether a dot-qmail file of that name exists."""
    try:
        os.stat(os.path.join(home, name))
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    return True


def user_may_read(st: os.stat_result, uid: int, gid: int) -> bool:
    """The kernel's read permission check for *uid*/*gid* (no other groups:
    deliveries run with the user's gid only, like qmail's prot_gid)."""
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _open_regular(path: os.PathLike | str, as_user: tuple[int, int] | None = None
                  ) -> tuple[bytes, int] | None:
    try:
        # O_NONBLOCK: a FIFO in a .qmail's place must not hang the delivery
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise temporary(f"Unable to open {path}: access denied. (#4.3.0)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if as_user is not None and as_user[0] != 0 and not user_may_read(st, *as_user):
            raise temporary(f"Unable to open {path}: access denied. (#4.3.0)")
        if st.st_mode & WRITABLE:
            raise temporary("Uh-oh: .qmail file is writable. (#4.7.0)")
        return read_to_end(fd, st.st_size), st.st_mode
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Instruction:
    """One delivery line: *kind* (maildir/mbox/program/forward/list/branch/
    label) and *value*; a branch also has the *label* it may jump to."""

    kind: str
    value: str
    label: str = ""


def parse(content: str) -> list[Instruction]:
    """The delivery lines of a dot-qmail file, in order.

    A blank first line is an error (qmail-local refuses it); comments are
    skipped; ``+list`` marks a forward-only list.  indimail's branches:
    ``?label command`` runs *command* and jumps to the line ``:label`` when
    it exits 99; ``?label`` alone always jumps."""
    if not content.endswith("\n"):
        content += "\n"
    out: list[Instruction] = []
    for index, line in enumerate(content.split("\n")[:-1]):
        line = line.rstrip(" \t")
        if not line:
            if index == 0:
                raise temporary("Uh-oh: first line of .qmail file is blank. (#4.2.1)")
            continue
        first = line[0]
        if first == "#":
            continue
        if first == ":":
            if index:  # upstream only finds labels after a newline
                out.append(Instruction(LABEL, line[1:].split(None, 1)[0] if line[1:] else ""))
            continue
        if first in "./":
            out.append(Instruction(MAILDIR if line.endswith("/") else MBOX, line))
        elif first == "|":
            out.append(Instruction(PROGRAM, line[1:]))
        elif first == "?":
            label, _, command = line[1:].replace("\t", " ").partition(" ")
            out.append(Instruction(BRANCH, command.strip(" \t"), label))
        elif first == "+":
            if line[1:] == "list":
                out.append(Instruction(LIST, ""))
        elif first == "&":
            out.append(Instruction(FORWARD, line[1:]))
        else:
            out.append(Instruction(FORWARD, line))
    return out
