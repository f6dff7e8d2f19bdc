"""Header completion for locally injected mail (qmail-inject, sendmail).

What qmail-inject does to a message before queueing it: drop ``Bcc``,
``Resent-Bcc``, ``Return-Path`` and ``Content-Length``; add ``Date``,
``Message-ID: <time.pid.qmail@host>`` and ``From`` when missing; take the
recipients from the arguments or from ``To``/``Cc``/``Bcc``/``Apparently-To``
(the ``Resent-`` ones when present); qualify bare addresses with
``defaulthost`` / ``defaultdomain``.  Only the header is held in memory;
the body is streamed.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import BinaryIO, Iterator, Mapping

from ..config.control import ControlFiles
from .received import rfc5322_date

DROPPED = {"bcc", "resent-bcc", "return-path", "content-length"}
RECIPIENT_FIELDS = ("to", "cc", "bcc", "apparently-to")
RESENT_FIELDS = ("resent-to", "resent-cc", "resent-bcc")


@dataclass
class Header:
    """The header fields of a message, each kept as its raw lines."""

    fields: list[tuple[str, bytes]] = field(default_factory=list)

    def names(self) -> set[str]:
        return {name for name, _raw in self.fields}

    def values(self, name: str) -> list[str]:
        out = []
        for fname, raw in self.fields:
            if fname == name:
                value = raw.split(b":", 1)[1] if b":" in raw else b""
                text = value.decode("utf-8", "surrogateescape")
                out.append(" ".join(text.split()))
        return out

    def drop(self, names: set[str]) -> None:
        self.fields = [(n, raw) for n, raw in self.fields if n not in names]

    def add(self, line: str) -> None:
        name = line.split(":", 1)[0].strip().lower()
        self.fields.append((name, line.encode("utf-8", "surrogateescape") + b"\n"))

    def to_bytes(self) -> bytes:
        return b"".join(raw for _n, raw in self.fields)


def _logical(line: bytes) -> bytes:
    return line[:-2] + b"\n" if line.endswith(b"\r\n") else line


def read_header(stream: BinaryIO, dot_ends: bool = False) -> tuple[Header, bytes | None, bool]:
    """Read header lines up to the blank line.  Returns the header, the
    separator/first body line seen (``None`` at EOF) and whether a lone
    ``.`` ended the input (only with *dot_ends*)."""
    header = Header()
    while True:
        line = stream.readline()
        if not line:
            return header, None, False
        logical = _logical(line)
        if dot_ends and logical.rstrip(b"\n") == b".":
            return header, None, True
        if logical in (b"\n",):
            return header, logical, False
        if logical[:1] in (b" ", b"\t") and header.fields:
            name, raw = header.fields[-1]
            header.fields[-1] = (name, raw + logical)
            continue
        colon = logical.find(b":")
        if colon <= 0 or not all(33 <= c <= 126 for c in logical[:colon].rstrip(b" \t")):
            # not a header line: the body starts here (qmail-inject inserts
            # the blank line)
            return header, b"\n" + logical, False
        name = logical[:colon].strip().decode("ascii", "replace").lower()
        if not logical.endswith(b"\n"):
            logical += b"\n"
        header.fields.append((name, logical))


def body_chunks(stream: BinaryIO, dot_ends: bool = False,
                size: int = 64 * 1024) -> Iterator[bytes]:
    """The rest of *stream*; with *dot_ends* it stops at a lone ``.`` line
    (sendmail without ``-i``), else it reads to EOF in chunks."""
    if not dot_ends:
        while True:
            data = stream.read(size)
            if not data:
                return
            yield data
    for line in iter(stream.readline, b""):
        if _logical(line).rstrip(b"\n") == b".":
            return
        yield line


@dataclass
class Identity:
    """Who is sending: names and hosts from the environment and controls."""

    user: str
    host: str
    defaulthost: str
    defaultdomain: str
    idhost: str
    fullname: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str], control: ControlFiles) -> "Identity":
        me = control.value("me") or os.uname().nodename
        defaulthost = env.get("QMAILDEFAULTHOST") or control.value("defaulthost") or me
        defaultdomain = env.get("QMAILDEFAULTDOMAIN") or control.value("defaultdomain") or me
        user = (env.get("QMAILUSER") or env.get("MAILUSER") or env.get("USER")
                or env.get("LOGNAME") or _login())
        host = env.get("QMAILHOST") or env.get("MAILHOST") or defaulthost
        idhost = env.get("QMAILIDHOST") or control.value("idhost") or host
        fullname = env.get("QMAILNAME") or env.get("MAILNAME") or env.get("NAME")
        return cls(user, host, defaulthost, defaultdomain, idhost, fullname)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}"

    def qualify(self, address: str) -> str:
        """``user`` -> ``user@defaulthost``; ``user@host`` without a dot ->
        ``user@host.defaultdomain`` (qmail-inject's rewriting)."""
        address = address.strip()
        if not address:
            return address
        if "@" not in address:
            return f"{address}@{self.defaulthost}"
        local, domain = address.rsplit("@", 1)
        if "." not in domain and not domain.startswith("[") and self.defaultdomain:
            return f"{local}@{domain}.{self.defaultdomain}"
        return address


def _login() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def header_recipients(header: Header) -> list[str]:
    """Recipients named in the header (Resent- fields win when present)."""
    names = RESENT_FIELDS if header.names() & set(RESENT_FIELDS) else RECIPIENT_FIELDS
    values = [v for name in names for v in header.values(name)]
    return [addr for _name, addr in getaddresses(values) if addr]


def complete_header(header: Header, ident: Identity, *, now: float | None = None,
                    pid: int | None = None, flags: str = "",
                    fullname: str | None = None) -> Header:
    """Drop what must not travel and add Date, Message-ID and From.

    *flags* are ``QMAILINJECT`` letters: ``f`` deletes an existing From,
    ``i`` an existing Message-ID (both then get ours)."""
    now = time.time() if now is None else now
    pid = os.getpid() if pid is None else pid
    drop = set(DROPPED)
    if "f" in flags:
        drop.add("from")
    if "i" in flags:
        drop.add("message-id")
    header.drop(drop)
    names = header.names()
    if "date" not in names:
        header.add(f"Date: {rfc5322_date(now)}")
    if "message-id" not in names:
        header.add(f"Message-ID: <{int(now)}.{pid}.qmail@{ident.idhost}>")
    if "from" not in names:
        name = fullname if fullname is not None else ident.fullname
        header.add(f"From: {name} <{ident.address}>" if name else f"From: {ident.address}")
    return header


def envelope_sender(env: Mapping[str, str], ident: Identity, flag_f: str | None) -> str:
    """``-f`` wins; else QMAILSUSER@QMAILSHOST; else the From address."""
    if flag_f is not None:
        return flag_f
    user = env.get("QMAILSUSER") or ident.user
    host = env.get("QMAILSHOST") or ident.host
    return f"{user}@{host}"
