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
    if "\\" not in rest and '"' not in rest:   # nothing to unquote: most paths
        end = rest.find(terminator)
        if end < 0:
            end = len(rest)
        return _path(rest[:end], rest[end + 1:])
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
    return _path("".join(out), rest[end + 1:])


def _path(address: str, params: str) -> Path | None:
    if len(address) > MAX_PATH // 4 and len(address.encode("utf-8", "surrogateescape")) > MAX_PATH:
        return None
    return Path(address, parse_params(params) if params else {})


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
