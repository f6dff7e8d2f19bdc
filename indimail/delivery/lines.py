"""The lines qmail-local adds to every delivered copy, byte for byte.

``Delivered-To: <local>@<host>`` (the local part as qmail-lspawn passed it,
e.g. ``example.com-alice@example.com``), ``Return-Path: <sender>`` with
qmail's quoting of the local part, and the mbox ``From `` line.
"""

from __future__ import annotations

import time

_OK = set(
    "!#$%&'*+-./0123456789=?ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz{|}~"
)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def quote_need(local: str) -> bool:
    """qmail's ``quote_need``: empty, unusual characters, or bad dots."""
    if not local:
        return True
    if any(ch not in _OK for ch in local):
        return True
    return local.startswith(".") or local.endswith(".") or ".." in local


def quote(local: str) -> str:
    if not quote_need(local):
        return local
    escaped = "".join("\\" + ch if ch in '\r\n"\\' else ch for ch in local)
    return '"' + escaped + '"'


def quote2(address: str) -> str:
    """qmail's ``quote2``: quote the local part of *address* when needed."""
    if not address:
        return address
    at = address.rfind("@")
    if at < 0:
        return quote(address)
    return quote(address[:at]) + address[at:]


def dtline(local: str, host: str) -> bytes:
    """``Delivered-To: local@host\\n`` (newlines in the address become ``_``)."""
    text = ("Delivered-To: " + local + "@" + host).replace("\n", "_")
    return _enc(text + "\n")


def rpline(sender: str) -> bytes:
    """``Return-Path: <sender>\\n`` with qmail's quoting."""
    text = ("Return-Path: <" + quote2(sender)).replace("\n", "_")
    return _enc(text + ">\n")


def ctime(now: float) -> str:
    """qmail's ``myctime``: ``Sat Nov 21 22:35:58 2026\\n`` in UTC."""
    t = time.gmtime(now)
    return "%s %s %02d %02d:%02d:%02d %d\n" % (
        _DAYS[t.tm_wday], _MONTHS[t.tm_mon - 1], t.tm_mday,
        t.tm_hour, t.tm_min, t.tm_sec, t.tm_year)


def ufline(sender: str, now: float) -> bytes:
    """The mbox ``From `` line: blanks in the sender become ``-``; the null
    sender is ``MAILER-DAEMON``.

    QUIRK: indimail-mta's qmail-local omits the space between a non-null
    sender and the date, which mbox readers cannot parse; we write netqmail's
    form (always a space)."""
    if sender:
        who = "".join("-" if ch in " \t\n" else ch for ch in sender)
    else:
        who = "MAILER-DAEMON"
    return _enc("From " + who + " " + ctime(now))


def gfrom(line: bytes) -> bool:
    """Whether an mbox line needs a ``>``: ``From `` after any ``>``s."""
    return line.lstrip(b">").startswith(b"From ")


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
