"""envrules: per-sender (or per-recipient) environment changes.

A rules file (``from.envrules`` / ``$FROMRULES``, ``rcpt.envrules`` /
``$RCPTRULES``, ...) has lines ``pattern:VAR=val,VAR2=,VAR3=val3`` split at
the first ``:`` (upstream ``envrules.c``):

* the pattern is a wildmat, or a case-insensitive extended regex searched
  anywhere in the address when ``QREGEX`` is set;
* an empty pattern or ``<>`` also matches the null sender;
* every matching line applies, in file order;
* ``VAR=`` unsets ``VAR``, ``VAR=val`` sets it (a bare ``VAR`` unsets too),
  ``\\,`` is a literal comma; blanks before a name are ignored.

Lines without ``:`` are ignored, like upstream.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .control import ControlFileError, strip_lines
from .wildmat import wildmat



@dataclass
class EnvRule:
    """One line of a rules file."""

    pattern: str
    assignments: list[tuple[str, str | None]]
    path: str = "<envrules>"
    lineno: int = 0
    _regex: re.Pattern | None = field(default=None, repr=False, compare=False)

    def matches(self, address: str, regex: bool = False) -> bool:
        if not address and self.pattern in ("", "<>"):
            return True
        if not regex:
            return wildmat(self.pattern, address)
        if self._regex is None:
            try:
                self._regex = re.compile(self.pattern, re.IGNORECASE)
            except re.error as exc:
                raise ControlFileError(self.path, self.lineno, f"bad regular expression: {exc}") from None
        return self._regex.search(address) is not None


def parse_assignments(text: str) -> list[tuple[str, str | None]]:
    """``VAR=val,VAR2=,...`` as ``(name, value-or-None)`` pairs."""
    pieces: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1:i + 2] == ",":
            current += ","
            i += 2
            continue
        if ch == ",":
            pieces.append(current)
            current = ""
        else:
            current += ch
        i += 1
    pieces.append(current)
    result: list[tuple[str, str | None]] = []
    for piece in pieces:
        piece = piece.lstrip()
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        if not name:
            continue
        result.append((name, value if sep and value else None))
    return result


def parse_envrules(lines: list[str], path: os.PathLike | str = "<envrules>") -> list[EnvRule]:
    """Rules from a control file's meaningful lines (see ``strip_lines``)."""
    rules = []
    for lineno, line in enumerate(lines, 1):
        pattern, sep, rest = line.partition(":")
        if sep:
            rules.append(EnvRule(pattern, parse_assignments(rest), str(path), lineno))
    return rules


def load_envrules(path: os.PathLike | str) -> list[EnvRule]:
    """The rules of file *path*; a missing file has none."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    rules = []
    # keep real line numbers for error messages
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        for line in strip_lines(raw):
            for rule in parse_envrules([line], path):
                rule.lineno = lineno
                rules.append(rule)
    return rules


def match_envrules(rules: list[EnvRule], address: str, regex: bool = False) -> list[tuple[str, str | None]]:
    """The assignments of every rule matching *address*, in order; apply
    them with ``Environment.apply``."""
    result: list[tuple[str, str | None]] = []
    for rule in rules:
        if rule.matches(address, regex):
            result.extend(rule.assignments)
    return result
