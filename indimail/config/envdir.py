"""envdir: a directory of files, one per environment variable.

The rules are IndiMail's (libqmail ``envdir.c``, ``envdir(8)``):

* a file ``NAME`` sets ``NAME`` to its first line, trailing spaces and tabs
  removed and NUL bytes turned into newlines; an empty (0-byte) file unsets
  ``NAME``; names starting with ``.`` are skipped;
* ``.envfile`` holds ``NAME=value`` lines (``#`` comments, blank lines and
  leading blanks ignored; a bare ``NAME`` unsets);
* ``.envdir`` is a directory, a symlink to one, or a file listing
  directories (one per line), each processed recursively;
* order: ``.envfile`` first, then ``.envdir``, then the directory's own
  files, so a directory always overrides what it includes;
* a directory is processed once: a cycle is reported (logged) and skipped
  rather than followed, as upstream skips visited inodes.

Relative paths inside a ``.envdir`` file are taken relative to the
directory holding it (upstream uses the process's working directory, which
for a supervised service is that same directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from indimail.fastlog import Logger
from .control import ControlFileError
from .environment import Environment
from .home import Home

log = Logger()


class EnvdirError(ControlFileError):
    """A variables directory could not be read; names the file."""


def read_envdir(path: os.PathLike | str, base: Mapping[str, str] | None = None) -> Environment:
    """*base* (default: the process environment) changed by the envdir *path*."""
    data = dict(os.environ if base is None else base)
    _Walker(data).directory(Path(path))
    return Environment(data)


def service_environment(home: Home, service: str,
                        base: Mapping[str, str] | None = None) -> Environment:
    """A service's base environment: process env (or *base*) + ``variables/<service>/``."""
    path = home.variables_for(service)
    if not path.is_dir():
        return Environment(os.environ if base is None else base)
    return read_envdir(path, base)


def _first_line(raw: bytes) -> str:
    value = raw.split(b"\n", 1)[0].rstrip(b" \t").replace(b"\0", b"\n")
    return value.decode("utf-8", "surrogateescape")


class _Walker:
    """One envdir run: the variables being built and the directories seen."""

    def __init__(self, data: dict[str, str]):
        self.data = data
        self.visited: set[tuple[int, int]] = set()

    def directory(self, path: Path) -> None:
        try:
            st = path.stat()
        except OSError as exc:
            raise EnvdirError(path, None, f"unable to open environment directory ({exc.strerror})") from exc
        if not path.is_dir():
            raise EnvdirError(path, None, "not a directory")
        ident = (st.st_dev, st.st_ino)
        if ident in self.visited:
            log.warn("envdir: recursive loop: {path} already processed, skipped", path=str(path.resolve()))
            return
        self.visited.add(ident)
        self.envfile(path / ".envfile")
        self.envdir(path / ".envdir")
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            raise EnvdirError(path, None, f"unable to read environment directory ({exc.strerror})") from exc
        for name in names:
            if name.startswith("."):
                continue
            self.variable(path / name, name)

    def variable(self, path: Path, name: str) -> None:
        if "=" in name:
            raise EnvdirError(path, None, "variable name contains '='")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise EnvdirError(path, None, f"unable to open environment file ({exc.strerror})") from exc
        if raw:
            self.data[name] = _first_line(raw)
        else:
            self.data.pop(name, None)

    def envfile(self, path: Path) -> None:
        if not (path.exists() or path.is_symlink()) or path.is_dir():
            return  # absent, or a directory: upstream ignores it
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise EnvdirError(path, None, f"unable to open .envfile ({exc.strerror})") from exc
        for line in raw.replace(b"\0", b"\n").split(b"\n"):
            line = line.lstrip()
            if not line or line.startswith(b"#"):
                continue
            text = line.decode("utf-8", "surrogateescape")
            name, sep, value = text.partition("=")
            if sep:
                self.data[name] = value.rstrip(" \t")
            else:
                self.data.pop(name.rstrip(), None)

    def envdir(self, path: Path) -> None:
        if not (path.exists() or path.is_symlink()):
            return
        if path.is_dir():
            self.directory(path)
            return
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise EnvdirError(path, None, f"unable to open .envdir ({exc.strerror})") from exc
        for line in raw.decode("utf-8", "surrogateescape").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                self.directory(path.parent / os.path.expanduser(line))
