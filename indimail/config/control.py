"""Control files: qmail's plain-text configuration, with cdb and sql forms.

A control file ``name`` is looked up as ``name.cdb``, then ``name.sql`` (a
MySQL table; the slot is filled by the virtual-domain store), then the plain
text file.  Every read is cached and refreshed when the file changes
(inode, size, mtime or ctime differ), so a long-running service follows edits:
at the next lookup, or with *recheck* within that many seconds (at once after
:meth:`ControlFiles.refresh`, which SIGHUP calls).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import cdblib


class ControlFileError(ValueError):
    """A control file could not be understood; names the file and line."""

    def __init__(self, path: os.PathLike | str, lineno: int | None, message: str):
        where = f"{path}:{lineno}" if lineno else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.lineno = lineno


def strip_lines(data: bytes) -> list[str]:
    """Lines of a control file without comments, blank lines or trailing spaces."""
    lines = []
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        lines.append(line)
    return lines


@dataclass(frozen=True)
class _Stamp:
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


def _stamp(path: Path | str) -> _Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return _Stamp(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# "not looked at yet": the monotonic clock starts near 0 at boot, so 0.0
# would count as "just looked" for the first CONTROL_RECHECK seconds of uptime
NEVER = float("-inf")


class _Cached:
    """One file's parsed content, reparsed only when the file changes."""

    def __init__(self, path: Path, parse: Callable[[Path], object], recheck: float = 0.0):
        self.path = path
        self._name = os.fspath(path)   # os.stat on a str: no pathlib work per lookup
        self.parse = parse
        self.recheck = recheck
        self.checked = NEVER
        self.stamp: _Stamp | None = None
        self.value: object = None
        self.loaded = False
        self.lock = threading.Lock()   # readers in worker threads see a reload whole

    def get(self) -> object:
        if self.recheck and self.loaded:
            now = time.monotonic()
            if now - self.checked < self.recheck:
                return self.value
            self.checked = now
        with self.lock:
            if self.recheck:
                self.checked = time.monotonic()
            stamp = _stamp(self._name)
            if not self.loaded or stamp != self.stamp:
                try:
                    self.value = self.parse(self.path) if stamp is not None else None
                except BaseException:
                    # a broken file is reported at every lookup until it is
                    # mended, not served stale until the next recheck
                    self.checked = NEVER
                    raise
                self.stamp = stamp
                self.loaded = True
            return self.value


def _present(path: Path) -> bool:
    return True


def _read_text(path: Path) -> list[str]:
    return strip_lines(path.read_bytes())


def _read_keys(path: Path) -> frozenset[str]:
    return frozenset(line.strip().lower() for line in _read_text(path))


def _read_cdb(path: Path) -> cdblib.Reader:
    try:
        return cdblib.Reader(path.read_bytes())
    except Exception as exc:  # a truncated or foreign file
        raise ControlFileError(path, None, f"not a cdb file ({exc})") from exc


# A sql lookup: (table name, key) -> bool.  Installed by the vdomain store.
SqlLookup = Callable[[str, str], bool]


def control_recheck(env: Mapping[str, str]) -> float:
    """``CONTROL_RECHECK`` seconds (default 1; 0: look at every lookup): how
    often a long-running service looks at a control file's stamp.  SIGHUP
    makes it look at once."""
    try:
        return max(0.0, float(env.get("CONTROL_RECHECK", "1")))
    except ValueError:
        return 1.0


class ControlFiles:
    """Cached access to the files of one control directory."""

    def __init__(self, directory: os.PathLike | str, sql_lookup: SqlLookup | None = None,
                 recheck: float = 0.0):
        """*recheck* > 0 looks at a file's stamp at most once in that many
        seconds (a busy service: edits show within that time, not at once)."""
        self.directory = Path(directory)
        self.sql_lookup = sql_lookup
        self.recheck = recheck
        self._cache: dict[tuple[object, str], _Cached] = {}

    def path(self, name: str) -> Path:
        return self.directory / name

    def refresh(self) -> None:
        """Look at every file again at the next lookup (SIGHUP)."""
        for entry in list(self._cache.values()):
            entry.checked = NEVER

    def _cached(self, kind: object, name: str, parse: Callable[[Path], object]) -> object:
        key = (kind, name)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = _Cached(self.path(name), parse, self.recheck)
        return entry.get()

    def parsed(self, name: str, parse: Callable[[Path], object]) -> object:
        """``parse(path)`` of file *name*, cached like the other reads; None
        when the file is absent (e.g. ``parsed("from.envrules", load_envrules)``)."""
        return self._cached(parse, name, parse)

    def exists(self, name: str) -> bool:
        return self._cached("exists", name, _present) is not None

    def lines(self, name: str, default: list[str] | None = None) -> list[str]:
        """The text file's meaningful lines; *default* (or []) when absent."""
        value = self._cached("text", name, _read_text)
        if value is None:
            return list(default or [])
        return list(value)  # type: ignore[arg-type]

    def keys(self, name: str) -> frozenset[str] | None:
        """The text file's lines stripped and lower-cased, as a set made once
        per change of the file (lists asked on every RCPT: rcpthosts, locals,
        chkrcptdomains); None when absent."""
        return self._cached("keys", name, _read_keys)  # type: ignore[return-value]

    def value(self, name: str, default: str | None = None) -> str | None:
        """The first meaningful line (qmail's control_readline)."""
        lines = self.lines(name)
        return lines[0].strip() if lines else default

    def int(self, name: str, default: int) -> int:
        """The first line as an integer; a non-number is a reported error."""
        text = self.value(name)
        if text is None:
            return default
        try:
            return int(text)
        except ValueError:
            raise ControlFileError(self.path(name), 1, f"not a number: {text!r}") from None

    def cdb(self, name: str) -> cdblib.Reader | None:
        """The reader of ``name.cdb`` or None when there is none."""
        return self._cached("cdb", name + ".cdb", _read_cdb)  # type: ignore[return-value]

    def contains(self, name: str, key: str, lower: bool = True) -> bool:
        """Whether *key* is listed in control file *name*: cdb, then sql, then text."""
        if lower:
            key = key.lower()
        reader = self.cdb(name)
        if reader is not None:
            return reader.get(key.encode("utf-8", "surrogateescape")) is not None
        if self.sql_lookup is not None and self.exists(name + ".sql"):
            return self.sql_lookup(name, key)
        if lower:
            return key in (self.keys(name) or ())
        return key in {line.strip() for line in self.lines(name)}
