"""Create or repair one queue directory, as upstream ``queue-fix`` does.

Idempotent: a second run on a good queue changes nothing and returns an
empty list.  Modes follow reference §1 (``queue-fix.c``); ownership is
changed only when running as root and a uid/gid was given, so a queue in
an unprivileged home works for the user that owns it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .layout import QueueDir
from .placement import mark_top

TCPTO_SIZE = 2048

# directory -> (dir mode, mode of the message files inside)
_SPLIT_MODES = {
    "mess": (0o750, 0o644),
    "todo": (0o750, 0o644),
    "intd": (0o700, 0o644),
    "info": (0o700, 0o600),
    "local": (0o700, 0o600),
    "remote": (0o700, 0o600),
}
_FLAT_MODES = {
    "bounce": (0o700, 0o600),
    "pid": (0o700, None),
    "trash": (0o700, None),
}
QUEUE_MODE = 0o750
LOCK_MODE = 0o750


@dataclass(frozen=True)
class _Item:
    path: Path
    kind: str       # "d" directory, "f" existing file, "z" sized file, "p" fifo
    mode: int
    size: int = 0
    top: bool = False   # mark as an Orlov top directory when made (placement.py)


def _items(queue: QueueDir) -> list[_Item]:
    """Everything a queue must contain, parents before children."""
    root = queue.path
    items = [_Item(root, "d", QUEUE_MODE, top=True)]
    for name, (dmode, _fmode) in _SPLIT_MODES.items():
        items.append(_Item(root / name, "d", dmode, top=True))
        items.extend(_Item(root / name / str(n), "d", dmode) for n in range(queue.split))
    for name, (dmode, _fmode) in _FLAT_MODES.items():
        items.append(_Item(root / name, "d", dmode))
    items += [
        _Item(root / "lock", "d", LOCK_MODE),
        _Item(root / "lock" / "sendmutex", "z", 0o600, 0),
        _Item(root / "lock" / "tcpto", "z", 0o644, TCPTO_SIZE),
        _Item(root / "lock" / "trigger", "p", 0o622),
    ]
    return items


def queue_fix(queue: QueueDir, uid: int | None = None, gid: int | None = None,
              *, dry_run: bool = False) -> list[str]:
    """Create or repair *queue*; returns one line per change made (or, with
    *dry_run*, that would be made).  Raises ``OSError`` when it cannot."""
    chown = uid is not None and os.geteuid() == 0
    changes: list[str] = []
    if not dry_run:
        queue.path.parent.mkdir(parents=True, exist_ok=True)
    for item in _items(queue):
        changes += _check(item, uid, gid, chown, dry_run)
    for name, (_dmode, fmode) in {**_SPLIT_MODES, **_FLAT_MODES}.items():
        if fmode is None or not (queue.path / name).is_dir():
            continue
        changes += _check_files(queue, name, fmode, uid, gid, chown, dry_run)
    changes += _strays(queue, dry_run)
    return changes


def _strays(queue: QueueDir, dry_run: bool) -> list[str]:
    """Files of info/local/remote/todo/intd/bounce whose mess file is gone
    (upstream ``find_strays``): nothing can ever deliver them."""
    out: list[str] = []
    for name in ("info", "local", "remote", "todo", "intd", "bounce"):
        top = queue.path / name
        dirs = [top / str(n) for n in range(queue.split)] if name != "bounce" else [top]
        for d in dirs:
            if not d.is_dir():
                continue
            for entry in sorted(d.iterdir()):
                if entry.name.startswith(".") or not entry.name.isdigit():
                    continue
                if not queue.mess(int(entry.name)).exists():
                    out.append(f"Unlinking [{entry}]")
                    if not dry_run:
                        os.unlink(entry)
    return out


def _check(item: _Item, uid, gid, chown: bool, dry_run: bool) -> list[str]:
    name = str(item.path)
    try:
        st = os.lstat(item.path)
    except FileNotFoundError:
        st = None
    out: list[str] = []
    if st is None:
        if item.kind == "d":
            out.append(f"Creating directory [{name}]")
            if not dry_run:
                os.mkdir(item.path, item.mode)
                if item.top:
                    mark_top(item.path)
        elif item.kind == "p":
            out.append(f"Creating fifo [{name}]")
            if not dry_run:
                os.mkfifo(item.path, item.mode)
        else:
            out.append(f"Creating [{name}] with size [{item.size}]")
            if not dry_run:
                fd = os.open(item.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, item.mode)
                try:
                    os.write(fd, b"\0" * item.size)
                finally:
                    os.close(fd)
        out.append(f"Changing permissions of [{name}] to mode [{item.mode:o}]")
        if not dry_run:
            os.chmod(item.path, item.mode)
        if chown and not dry_run:
            os.chown(item.path, uid, -1 if gid is None else gid)
        return out
    expected = {"d": stat.S_ISDIR, "p": stat.S_ISFIFO}.get(item.kind, stat.S_ISREG)
    if not expected(st.st_mode):
        raise OSError(f"{name} exists but is not the right type of file")
    if chown and (st.st_uid != uid or (gid is not None and st.st_gid != gid)):
        out.append(f"Changing ownership of [{name}] to uid {uid} gid {gid}")
        if not dry_run:
            os.chown(item.path, uid, -1 if gid is None else gid)
    if stat.S_IMODE(st.st_mode) != item.mode:
        out.append(f"Changing permissions of [{name}] to mode [{item.mode:o}]")
        if not dry_run:
            os.chmod(item.path, item.mode)
    if item.kind == "z" and st.st_size != item.size:
        out.append(f"warn: {name} is not the right size. "
                   "I will not fix it, please investigate.")
    return out


def _check_files(queue: QueueDir, name: str, fmode: int, uid, gid,
                 chown: bool, dry_run: bool) -> list[str]:
    """Fix modes of message files, and move a file sitting in the wrong split
    sub-directory (e.g. after CONFSPLIT changed) to where its id belongs."""
    out: list[str] = []
    top = queue.path / name
    split = name in _SPLIT_MODES
    dirs = [top / str(n) for n in range(queue.split)] if split else [top]
    if split:
        stray = sorted(p for p in top.iterdir()
                       if p.is_dir() and p.name.isdigit() and int(p.name) >= queue.split)
        dirs += stray
    for d in dirs:
        if not d.is_dir():
            continue
        for entry in sorted(d.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            target = entry
            if split and entry.name.isdigit():
                want = queue.sub(name, int(entry.name))
                if want != entry:
                    out.append(f"Renaming [{entry}] to [{want}]")
                    if not dry_run:
                        os.rename(entry, want)
                    target = want
            if dry_run and target != entry:
                target = entry
            st = os.lstat(target)
            if stat.S_IMODE(st.st_mode) != fmode:
                out.append(f"Changing permissions of [{target}] to mode [{fmode:o}]")
                if not dry_run:
                    os.chmod(target, fmode)
            if chown and st.st_uid != uid:
                out.append(f"Changing ownership of [{target}] to uid {uid} gid {gid}")
                if not dry_run:
                    os.chown(target, uid, -1 if gid is None else gid)
    return out
