"""``users/assign`` (and ``users/cdb``): which user, home and extension a
local part belongs to — qmail-lspawn's ``nughde_get``.

Lines are ``=local:user:uid:gid:home:dash:ext:`` (exact) and
``+prefix:user:uid:gid:home:dash:pre:`` (wildcard); the file ends with a
line ``.``.  Keys are case-insensitive.  An exact entry wins; otherwise the
longest matching prefix, whose ext gets the rest of the local part appended
(in its original case).  ``users/cdb`` (qmail-newu's output) is used when it
exists, with the same rules.  :class:`UserResolver` adds qmail-getpw's
fallbacks: the system password database, then the alias user.
"""

from __future__ import annotations

import errno
import os
import pwd
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cdblib

from indimail.config.control import ControlFileError


@dataclass(frozen=True)
class AssignEntry:
    """What qmail-lspawn hands qmail-local: user, uid, gid, home, dash, ext."""

    user: str
    uid: int
    gid: int
    home: str
    dash: str
    ext: str


def _fields(data: str, path, lineno) -> AssignEntry:
    parts = data.split(":", 6)
    if len(parts) < 6:
        raise ControlFileError(path, lineno, "bad format in users/assign")
    user, uid, gid, home, dash, ext = parts[:6]
    return AssignEntry(user, _num(uid), _num(gid), home, dash, ext)


def _num(text: str) -> int:
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0  # scan_ulong: leading digits only


class AssignTable:
    """The parsed text ``users/assign``."""

    def __init__(self, exact: dict[str, AssignEntry], wild: list[tuple[str, AssignEntry]]):
        self.exact = exact
        # longest prefix first; among equal prefixes the first line wins
        self.wild = sorted(wild, key=lambda item: -len(item[0]))

    @classmethod
    def parse(cls, text: str, path: os.PathLike | str = "users/assign") -> "AssignTable":
        exact: dict[str, AssignEntry] = {}
        wild: list[tuple[str, AssignEntry]] = []
        seen_wild: set[str] = set()
        for lineno, line in enumerate(text.split("\n"), 1):
            if line.startswith("."):
                break
            if not line.strip() or line.startswith("#"):
                continue
            kind = line[0]
            key, sep, data = line[1:].partition(":")
            if kind not in "=+" or not sep:
                raise ControlFileError(path, lineno, "bad format in users/assign")
            entry = _fields(data, path, lineno)
            key = key.lower()
            if kind == "=":
                exact.setdefault(key, entry)
            elif key not in seen_wild:
                seen_wild.add(key)
                wild.append((key, entry))
        return cls(exact, wild)

    def lookup(self, local: str) -> AssignEntry | None:
        lower = local.lower()
        entry = self.exact.get(lower)
        if entry is not None:
            return entry
        for prefix, entry in self.wild:
            if lower.startswith(prefix):
                return _extend(entry, local[len(prefix):])
        return None


def _extend(entry: AssignEntry, rest: str) -> AssignEntry:
    return AssignEntry(entry.user, entry.uid, entry.gid, entry.home, entry.dash,
                       entry.ext + rest)


def lookup_cdb(reader: cdblib.Reader, local: str) -> AssignEntry | None:
    """qmail-lspawn's walk over ``users/cdb``: ``!local\\0`` exactly, then
    ``!prefix`` for ever shorter prefixes ending in a wildcard character."""
    lower = ("!" + local.lower()).encode("utf-8", "surrogateescape")
    raw_local = local.encode("utf-8", "surrogateescape")
    wildchars = reader.get(b"") or b""
    data = reader.get(lower + b"\0")
    if data is not None:
        return _from_cdb(data, b"")
    for i in range(len(lower), 0, -1):
        if i == 1 or lower[i - 1:i] in _chars(wildchars):
            data = reader.get(lower[:i])
            if data is not None:
                return _from_cdb(data, raw_local[i - 1:])
    return None


def _chars(data: bytes) -> set[bytes]:
    return {data[i:i + 1] for i in range(len(data))}


def _from_cdb(data: bytes, rest: bytes) -> AssignEntry:
    parts = (data + rest).decode("utf-8", "surrogateescape").split("\0")
    if len(parts) < 6:
        raise ControlFileError("users/cdb", None, "bad record")
    user, uid, gid, home, dash, ext = parts[:6]
    return AssignEntry(user, _num(uid), _num(gid), home, dash, ext)


class Assign:
    """Lookups in a ``users/`` directory, reloaded when the files change.
    Blocking (reads files): call it from a worker thread."""

    def __init__(self, users_dir: os.PathLike | str, recheck: float = 0.0):
        """*recheck* > 0 looks at the files' stamps at most once in that
        many seconds (:meth:`refresh` makes the next lookup look)."""
        self.dir = Path(users_dir)
        self.recheck = recheck
        self._checked: float | None = None   # None: look at the next lookup
        self._refreshes = 0   # a refresh() during a load keeps the next lookup looking
        self._stamp: tuple | None = None
        self._source: AssignTable | cdblib.Reader | None = None
        # Lookups run in several worker threads at once: a reload must be
        # seen whole or not at all (a half-loaded table bounced mail).
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Look at the files again at the next lookup (SIGHUP)."""
        self._refreshes += 1
        self._checked = None

    def _load(self) -> AssignTable | cdblib.Reader | None:
        checked = self._checked
        if checked is not None and time.monotonic() - checked < self.recheck:
            return self._source
        cdb_path, text_path = self.dir / "cdb", self.dir / "assign"
        with self._lock:
            now, refreshes = time.monotonic(), self._refreshes
            stamp = (_stat(cdb_path), _stat(text_path))
            if stamp != self._stamp:
                self._source = self._read(stamp, cdb_path, text_path)
                self._stamp = stamp
            # only once the table is whole (others read it unlocked), and not
            # over a refresh() that came after the stat
            if self.recheck and refreshes == self._refreshes:
                self._checked = now
            return self._source

    @staticmethod
    def _read(stamp, cdb_path: Path, text_path: Path) -> AssignTable | cdblib.Reader | None:
        if stamp[0] is not None:
            try:
                return cdblib.Reader(cdb_path.read_bytes())
            except Exception as exc:
                raise ControlFileError(cdb_path, None, f"not a cdb file ({exc})") from exc
        if stamp[1] is not None:
            text = text_path.read_bytes().decode("utf-8", "surrogateescape")
            return AssignTable.parse(text, text_path)
        return None

    def lookup(self, local: str) -> AssignEntry | None:
        source = self._load()
        if source is None:
            return None
        if isinstance(source, AssignTable):
            return source.lookup(local)
        return lookup_cdb(source, local)


def _stat(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# -- qmail-getpw: the system password database, then the alias user ----------

ALIAS_USER = "alias"        # qmail's auto_usera (conf-users)
GETPW_USERLEN = 32          # qmail-getpw's username buffer: names are shorter
# errno values qmail's error_temp() calls temporary (a stat failing so is an
# NFS problem: deliveries are deferred, not sent elsewhere)
_TEMP_ERRNOS = frozenset({errno.EINTR, errno.ENOMEM, errno.ETXTBSY, errno.EIO,
                          errno.ETIMEDOUT, errno.EAGAIN, errno.ECONNREFUSED,
                          errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ESTALE})


class GetpwError(Exception):
    """The password database could not be read now (qmail-getpw's QLX_NFS /
    QLX_SYS): the delivery is deferred with qmail-lspawn's text."""


def _getpw(name: str, getpwnam: Callable[[str], object]):
    try:
        return getpwnam(name)
    except KeyError:
        return None
    except OSError as exc:  # ETXTBSY and friends from the nss backend
        raise GetpwError("Temporary failure in qmail-lspawn.") from exc


def lookup_passwd(local: str, getpwnam: Callable[[str], object] = pwd.getpwnam,
                  stat: Callable[[str], os.stat_result] = os.stat) -> AssignEntry | None:
    """qmail-getpw's userext(): the whole local part, then each part before a
    ``-`` (longest first) lower-cased, names a system user when that user is
    not root and owns an existing home.  The rest after the ``-`` is the ext
    (original case) and dash is ``-``; no rest: dash and ext are empty."""
    end = len(local)
    while True:
        if end < GETPW_USERLEN and (end == len(local) or local[end] == "-"):
            pw = _getpw(local[:end].lower(), getpwnam)
            if pw is not None and pw.pw_uid != 0:
                entry = _owned_home(pw, local, end, stat)
                if entry is not None:
                    return entry
        if end == 0:
            return None
        end -= 1


def _owned_home(pw, local: str, end: int, stat) -> AssignEntry | None:
    try:
        st = stat(pw.pw_dir)
    except OSError as exc:
        if exc.errno in _TEMP_ERRNOS:
            raise GetpwError("NFS failure in qmail-local.") from None
        return None
    if st.st_uid != pw.pw_uid:
        return None
    dash, ext = ("-", local[end + 1:]) if end < len(local) else ("", "")
    return AssignEntry(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, dash, ext)


def lookup_alias(local: str, getpwnam: Callable[[str], object] = pwd.getpwnam,
                 alias_user: str = ALIAS_USER) -> AssignEntry | None:
    """The last resort: the alias user's home with dash ``-`` and the whole
    local part as ext (``~alias/.qmail-<local>``); None when there is no
    alias user."""
    pw = _getpw(alias_user, getpwnam)
    if pw is None:
        return None
    return AssignEntry(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, "-", local)


class UserResolver:
    """qmail-lspawn's nughde_get() whole: ``users/cdb`` (or ``users/assign``),
    then the password database, then the alias user.  Blocking."""

    def __init__(self, assign: Assign, *, getpwnam: Callable[[str], object] = pwd.getpwnam,
                 stat: Callable[[str], os.stat_result] = os.stat,
                 alias_user: str = ALIAS_USER):
        self.assign = assign
        self.getpwnam = getpwnam
        self.stat = stat
        self.alias_user = alias_user

    def lookup(self, local: str) -> AssignEntry | None:
        entry = self.assign.lookup(local)
        if entry is None:
            entry = lookup_passwd(local, self.getpwnam, self.stat)
        if entry is None:
            entry = lookup_alias(local, self.getpwnam, self.alias_user)
        return entry
