"""``control/smtproutes`` (and the ``SMTPROUTE`` variable): where a remote
domain's mail goes instead of its MX (qmail-remote's ``get_relayhost``).

Lines are ``domain:relay[:port[:penalty:max_tolerance]][ user password]``.
For host ``mail.example.com`` the keys tried are ``mail.example.com``,
``.example.com``, ``.com`` and then the empty key (``:relay``, the default
route); the first key found decides, and an empty relay means "use MX".
With the null sender the key ``!@`` (the bounce route) is tried first.
Keys are case-insensitive.

``penalty`` and ``max_tolerance`` tune the downed-host table (``tcpto``)
for the route: how long an address that keeps timing out is skipped
(default ``MIN_PENALTY`` or 3600 s; 0 turns the table off for the route)
and within how many seconds repeated errors count once (``MAX_TOLERANCE``
or 120 s).  Port 465 means SMTPS (TLS from the first byte).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

PORT_SMTP = 25
PORT_QMTP = 209


@dataclass(frozen=True)
class Route:
    """A relay to send to instead of the MX hosts."""

    host: str
    port: int = PORT_SMTP
    penalty: int | None = None
    tolerance: int | None = None
    protocol: str = "smtp"          # "qmtp" for a qmtproutes entry
    # SMTP AUTH credentials (``relay:port user password``); left out of
    # equality and repr so a password never shows in logs.
    user: str | None = field(default=None, compare=False, repr=False)
    password: str | None = field(default=None, compare=False, repr=False)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(user, password) when both were given."""
        if self.user and self.password:
            return self.user, self.password
        return None

    @property
    def implicit_tls(self) -> bool:
        """Port 465 means SMTPS (reference §8)."""
        return self.protocol == "smtp" and self.port == 465


def _leading_int(text: str) -> int | None:
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


def parse_relay(value: str, protocol: str = "smtp") -> Route | None:
    """``relay[:port[:penalty:tolerance]][ user password]``; None for an
    empty relay (use MX).  Like qmail-remote, the user ends at the next
    space and the password is the rest of the line.  The default port is
    25, or 209 for a QMTP route."""
    value, _, creds = value.partition(" ")
    user, _, password = creds.partition(" ")
    host, _, rest = value.partition(":")
    if not host:
        return None
    fields = rest.split(":") if rest else []
    port = _leading_int(fields[0]) if fields and fields[0] else None
    penalty = _leading_int(fields[1]) if len(fields) > 1 and fields[1] else None
    tolerance = _leading_int(fields[2]) if len(fields) > 2 and fields[2] else None
    default = PORT_QMTP if protocol == "qmtp" else PORT_SMTP
    return Route(host, default if port is None else port, penalty, tolerance, protocol,
                 user or None, password or None)


class SmtpRoutes:
    """A parsed routes table."""

    protocol = "smtp"

    def __init__(self, entries: Iterable[tuple[str, str]]):
        self.table: dict[str, str] = {}
        for key, value in entries:
            self.table.setdefault(key.lower(), value)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "SmtpRoutes":
        entries = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition(":")
            if sep:
                entries.append((key, value))
        return cls(entries)

    @classmethod
    def from_variable(cls, value: str) -> "SmtpRoutes":
        """``SMTPROUTE``: one or more routes separated by newlines or NULs."""
        return cls.from_lines(value.replace("\0", "\n").split("\n"))

    def __bool__(self) -> bool:
        return bool(self.table)

    def find(self, host: str, sender: str | None = None) -> tuple[bool, Route | None]:
        """(matched, route): matched is False when no key applies at all;
        route is None for "use MX"."""
        if sender == "" and "!@" in self.table:
            bounce_route = parse_relay(self.table["!@"], self.protocol)
            if bounce_route is not None:  # an empty bounce route falls through
                return True, bounce_route
        host = host.lower()
        for i in range(len(host) + 1):
            if i == 0 or i == len(host) or host[i] == ".":
                value = self.table.get(host[i:])
                if value is not None:
                    return True, parse_relay(value, self.protocol)
        return False, None

    def lookup(self, host: str, sender: str | None = None) -> Route | None:
        """The relay for *host*, or None for MX delivery."""
        return self.find(host, sender)[1]


def routes_for(env, control) -> SmtpRoutes:
    """``SMTPROUTE`` (else ``X-SMTPROUTES``) from *env* when set, else
    ``control/smtproutes`` (``SMTPROUTEFILE``, or ``SMTPROUTESFILE``, names
    another control file).  Reads files."""
    value = env.get("SMTPROUTE")
    if value is None:
        value = env.get("X-SMTPROUTES")
    if value is not None:
        return SmtpRoutes.from_variable(value)
    name = env.get("SMTPROUTEFILE") or env.get("SMTPROUTESFILE") or "smtproutes"
    return SmtpRoutes.from_lines(control.lines(name))
