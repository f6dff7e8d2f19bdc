"""Rule-based archiving: control file ``mailarchive`` (qmail-queue's
``set_archive``), applied when a message is queued.

Lines are ``type:pattern:destination``.  Type ``F`` matches the sender
(the null sender is ``<>``); ``T`` (or an empty type, or ``*``) matches each
recipient.  An empty pattern matches every address; otherwise it is a
case-insensitive extended regular expression searched in the address.  In
the destination ``%u`` is the address's local part, ``%d`` its domain and
``%e`` the whole address.  Every matching line adds its destination as one
more recipient, after the others, each destination once.  ``MAILARCHIVE``
names another control file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from indimail.config.control import strip_lines
from indimail.config.wildmat import wildmat
from indimail.diskio import read_if_exists

DEFAULT_FILE = "mailarchive"


@dataclass
class ArchiveRule:
    """One line of ``mailarchive``."""

    kind: str           # the type field: "F", "T", "" or "*" ...
    pattern: str
    destination: str
    _regex: re.Pattern | None = field(default=None, repr=False, compare=False)
    _bad: bool = field(default=False, repr=False, compare=False)

    def applies_to(self, kind: str) -> bool:
        """qmail-queue's type test: ``F`` lines only for the sender, ``T``,
        empty and ``*`` lines only for recipients, any other type for both."""
        first = self.kind[:1]
        if kind == "F" and first in ("", "*"):
            return False
        if first in ("F", "T") and first != kind:
            return False
        return True

    def matches(self, address: str) -> bool:
        if not self.pattern:
            return True
        if self._regex is None and not self._bad:
            try:
                self._regex = re.compile(self.pattern, re.IGNORECASE)
            except re.error:
                self._bad = True
        if self._bad:
            # not a regular expression (e.g. "*" in the seed's example):
            # read it as the wildmat an admin most likely meant
            return wildmat(self.pattern, address)
        return self._regex.search(address) is not None


def parse_rules(lines: list[str]) -> list[ArchiveRule]:
    """The rules of the meaningful lines of the file; lines without two
    ``:`` or with an empty destination are skipped, as upstream does."""
    rules = []
    for line in lines:
        kind, sep, rest = line.partition(":")
        if not sep:
            continue
        pattern, sep, destination = rest.partition(":")
        if not sep or not destination:
            continue
        rules.append(ArchiveRule(kind, pattern, destination))
    return rules


def load_rules(control_dir: os.PathLike | str, env: Mapping[str, str]) -> list[ArchiveRule]:
    """The rules of ``mailarchive`` (or the file ``MAILARCHIVE`` names);
    none when it is absent.  Blocking."""
    name = env.get("MAILARCHIVE") or DEFAULT_FILE
    data = read_if_exists(os.path.join(control_dir, name))
    if data is None:
        return []
    return parse_rules(strip_lines(data))


def expand(destination: str, address: str) -> str:
    """``%u``, ``%d`` and ``%e`` of *address* in *destination*; any other
    ``%`` stays as it is."""
    at = address.rfind("@")
    user = address if at < 0 else address[:at]
    domain = "" if at < 0 else address[at + 1:]
    out = []
    i = 0
    while i < len(destination):
        ch = destination[i]
        nxt = destination[i + 1:i + 2]
        if ch == "%" and nxt in ("u", "d", "e"):
            out.append({"u": user, "d": domain, "e": address}[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def archive_recipients(rules: list[ArchiveRule], sender: str,
                       recipients: list[str]) -> list[str]:
    """The archive addresses for a message, in order, without repeats."""
    found: list[str] = []
    addresses = [("F", sender or "<>")] + [("T", r) for r in recipients]
    for kind, address in addresses:
        for rule in rules:
            if rule.applies_to(kind) and rule.matches(address):
                target = expand(rule.destination, address)
                if target not in found:
                    found.append(target)
    return found


def with_archive(control_dir: os.PathLike | str, env: Mapping[str, str], sender: str,
                 recipients: list[str]) -> list[str]:
    """*recipients* followed by the archive addresses ``mailarchive`` adds
    for this message.  Blocking (reads the control file)."""
    rules = load_rules(control_dir, env)
    if not rules:
        return list(recipients)
    return list(recipients) + archive_recipients(rules, sender, recipients)
