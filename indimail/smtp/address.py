"""MAIL FROM / RCPT TO arguments: the path and its ESMTP parameters.

Parsing follows qmail-smtpd's ``addrparse()``: take what follows ``<`` up
to ``>``; without ``<`` take what follows ``:`` (leading spaces skipped) up
to a space — "partner should go read rfc 821", but tolerated.  A source
route (``@a,@b:``) is dropped, quotes are removed and ``\\`` escapes the
next character.  An address longer than 900 bytes is a syntax error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_PATH = 900


@dataclass(frozen=True)
class Path:
    """A parsed MAIL/RCPT argument."""

    address: str
    params: dict[str, str | None] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        return self.params.get(name.upper())

    def has(self, name: str) -> bool:
        return name.upper() in self.params


def parse_path(arg: str) -> Path | None:
    """The path in *arg* (``FROM:<a@b> SIZE=10``) or None on a syntax error."""
    terminator = ">"
    i = arg.find("<")
    if i >= 0:
        rest = arg[i + 1:]
    else:
        terminator = " "
        j = arg.find(":")
        rest = arg[j + 1:] if j >= 0 else ""
        if not rest:
            return None
        rest = rest.lstrip(" ")
    if rest.startswith("@"):  # source route: @a,@b:user@host
        k = rest.find(":")
        rest = rest[k + 1:] if k >= 0 else ""
    out = []
    escaped = quoted = False
    end = len(rest)
    for pos, ch in enumerate(rest):
        if escaped:
            out.append(ch)
            escaped = False
        elif not quoted and ch == terminator:
            end = pos
            break
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        else:
            out.append(ch)
    address = "".join(out)
    if len(address.encode("utf-8", "surrogateescape")) > MAX_PATH:
        return None
    return Path(address, parse_params(rest[end + 1:]))


def parse_params(text: str) -> dict[str, str | None]:
    """ESMTP ``KEY=value`` parameters, keys upper-cased; ``KEY`` alone maps to None."""
    params: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        params[key.upper()] = value if eq else None
    return params


def domain_of(address: str) -> str | None:
    """The part after the last ``@``, lower-cased; None without one."""
    at = address.rfind("@")
    if at < 0:
        return None
    return address[at + 1:].lower()
