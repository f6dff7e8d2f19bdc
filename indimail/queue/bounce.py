"""QSBMF bounces (qmail-send's ``addbounce()`` and ``injectbounce()``).

Pure functions build the bytes — the per-recipient record appended to
``bounce/id`` and the MIME bounce message — from arguments only (``now``,
``bouncehost`` …), so they are tested byte for byte.  :func:`inject_bounce`
puts a built bounce into the queue through the Enqueuer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Mapping

from indimail.config.control import ControlFiles

TRIPLE_BOUNCE = "#@[]"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# quote.c's table of characters allowed unquoted in a local part.
_ATOM = set(b"!#$%&'*+-/0123456789=?ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`"
            b"abcdefghijklmnopqrstuvwxyz{|}~.")


@dataclass(frozen=True)
class BounceConfig:
    """The control files that shape a bounce (defaults as qmail-send's)."""

    bouncehost: str = "localhost"
    bouncefrom: str = "MAILER-DAEMON"
    bouncesubject: str = "failure notice"
    doublebouncesubject: str = "failure notice"
    bouncemessage: str = ""
    doublebouncemessage: str = ""
    bouncemaxbytes: int = 50000
    doublebounceto: str = "postmaster@localhost"

    @classmethod
    def from_control(cls, control: ControlFiles) -> "BounceConfig":
        me = control.value("me", "localhost") or "localhost"
        dbhost = control.value("doublebouncehost", me) or me
        return cls(
            bouncehost=control.value("bouncehost", me) or me,
            bouncefrom=control.value("bouncefrom", "MAILER-DAEMON") or "MAILER-DAEMON",
            bouncesubject=control.value("bouncesubject", "failure notice") or "failure notice",
            doublebouncesubject=(control.value("doublebouncesubject", "failure notice")
                                 or "failure notice"),
            bouncemessage=_native(control, "bouncemessage"),
            doublebouncemessage=_native(control, "doublebouncemessage"),
            bouncemaxbytes=control.int("bouncemaxbytes", 50000),
            doublebounceto=(control.value("doublebounceto", "postmaster") or "postmaster")
            + "@" + dbhost,
        )


def _native(control: ControlFiles, name: str) -> str:
    """A whole message file (control_readnativefile) without its last newline."""
    try:
        data = control.path(name).read_bytes()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", "surrogateescape").rstrip("\n")


def strip_vdom_prepend(recipient: str, virtualdomains: Mapping[str, str]) -> str:
    """``example.com-alice@example.com`` → ``alice@example.com``: the address
    the sender used, for the bounce report (``stripvdomprepend()``)."""
    at = recipient.rfind("@")
    if at == -1:
        return recipient
    domain = recipient[at + 1:].lower()
    keys = [domain] + [domain[i:] for i in range(len(domain)) if domain[i] == "."] + [""]
    for key in keys:
        prepend = virtualdomains.get(key)
        if prepend is None:
            continue
        if prepend and recipient.startswith(prepend + "-"):
            return recipient[len(prepend) + 1:]
        break
    return recipient


def bounce_record(recipient: str, report: str) -> bytes:
    """What ``addbounce()`` appends to ``bounce/id`` for one failed recipient:
    ``<recipient>:\\n<report>\\n\\n`` with a blank line inside the report
    written as ``\\n/`` (a QSBMF paragraph must not end early)."""
    text = bytearray(b"<" + recipient.replace("\n", "_").encode("utf-8", "surrogateescape")
                     + b">:\n" + report.encode("utf-8", "surrogateescape"))
    if report and not report.endswith("\n"):
        text += b"\n"
    for pos in range(len(text) - 2, 0, -1):
        if text[pos] == 0x0A and text[pos - 1] == 0x0A:
            text[pos] = 0x2F  # '/'
    return bytes(text) + b"\n"


def date822(now: float) -> str:
    """qmail's ``date822fmt``: ``21 Nov 2026 22:35:59 -0000`` (UTC)."""
    t = time.gmtime(int(now))
    return (f"{t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} -0000")


def quote_local(local: str) -> str:
    """quote.c: a local part that is not a plain dot-atom is double-quoted."""
    raw = local.encode("utf-8", "surrogateescape")
    if (not raw or any(b not in _ATOM for b in raw) or raw.startswith(b".")
            or raw.endswith(b".") or b".." in raw):
        escaped = "".join("\\" + c if c in '\r\n"\\' else c for c in local)
        return f'"{escaped}"'
    return local


def quote_address(address: str) -> str:
    """quote2(): quote the local part of an address, keep the domain."""
    if not address:
        return address
    at = address.rfind("@")
    if at == -1:
        return quote_local(address)
    return quote_local(address[:at]) + address[at:]


def bounce_sender(sender: str) -> str:
    """The original sender as injectbounce() sees it (``owner-@host-@[]`` →
    ``owner-@host``)."""
    if len(sender) >= 5 and sender.endswith("-@[]"):
        return sender[:-4]
    return sender


def bounce_envelope(sender: str, config: BounceConfig) -> tuple[str, str] | None:
    """``(envelope sender, recipient)`` of the bounce, or None when it is
    discarded: a ``#@[]`` sender (triple bounce) or a double bounce while
    ``doublebounceto`` starts with ``@``."""
    if sender == TRIPLE_BOUNCE:
        return None
    if not sender:
        if config.doublebounceto.startswith("@"):
            return None
        return TRIPLE_BOUNCE, config.doublebounceto
    return "", sender


def bounced_address(bounce_text: bytes) -> str | None:
    """The first failed recipient of a bounce file, ``<addr>`` as upstream
    keeps it for the ``X-Bounced-Address`` header (None when there is none)."""
    text = bounce_text.decode("utf-8", "surrogateescape")
    head, sep, _rest = text.partition(":")
    if not sep or not head.startswith("<") or not head.endswith(">") or "\n" in head:
        return None
    return head


def build_bounce(*, sender: str, msgid: int, birth: float, bounce_text: bytes,
                 message: bytes, message_size: int, config: BounceConfig,
                 now: float, bounced: str | None = None) -> bytes:
    """The bounce message, MIME form, byte for byte as injectbounce().

    *message* is at most ``bouncemaxbytes`` of the original; *message_size*
    its full size (a message of that size or more is marked stripped).
    *bounced* (``<addr>``, see :func:`bounced_address`) adds the
    ``X-Bounced-Address`` header after ``Date``, as indimail-mta does.
    """
    recipient = sender if sender else config.doublebounceto
    boundary = f"{int(birth)}{config.bouncehost}{msgid}"
    xbounced = f"X-Bounced-Address: {bounced}\n" if bounced else ""
    head = (f"Date: {date822(now)}\n"
            f"{xbounced}"
            f"From: {quote_local(config.bouncefrom)}@{config.bouncehost}\n"
            f"To: {quote_address(recipient)}\n"
            f"MIME-Version: 1.0\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\n'
            f"Subject: {config.bouncesubject if sender else config.doublebouncesubject}\n"
            f"\n--{boundary}\n\n")
    if sender and config.bouncemessage:
        intro = config.bouncemessage + "\n"
    elif not sender and config.doublebouncemessage:
        intro = config.doublebouncemessage + "\n"
    elif sender:
        intro = (f"Hi. This is the qmail-send program at {config.bouncehost}.\n"
                 "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
                 "This is a permanent error; I've given up. Sorry it didn't work out.\n\n")
    else:
        intro = (f"Hi. This is the qmail-send program at {config.bouncehost}.\n"
                 "I tried to deliver a bounce message to this address, "
                 "but the bounce bounced!\n\n")
    enclosed = ("--- Enclosed is a copy of the message.\n\n--" if sender
                else "--- Enclosed is the original bounce.\n\n--")
    limit = config.bouncemaxbytes
    body = message[:max(limit, 0)]
    stripped = limit > 0 and message_size >= limit
    out = [_b(head + intro), bounce_text, _b(enclosed + boundary),
           b"\nContent-Type: message/rfc822\n\n",
           _b(f"Return-Path: <{quote_address(sender)}>\n"), body]
    if stripped:
        out.append(b"\n\n--- End of message stripped.\n")
    out.append(_b(f"\n--{boundary}--\n"))
    return b"".join(out)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def read_bounce_parts(bounce_path, mess_path, maxbytes: int) -> tuple[bytes, bytes, int] | None:
    """Blocking: the bounce file, the first *maxbytes* of the message and its
    size; None when there is no bounce file (nothing to send)."""
    try:
        with open(bounce_path, "rb") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    with open(mess_path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        body = handle.read(max(maxbytes, 0)) if maxbytes > 0 else b""
    return text, body, size


async def inject_bounce(enqueuer, data: bytes, envelope_sender: str, recipient: str,
                        env: Mapping[str, str] | None = None) -> int:
    """Queue a built bounce through the Enqueuer (Received line ``invoked for
    bounce``, *env* from bounce.envrules); fires with the new message id."""
    message = enqueuer.begin(env, invoked="bounce")
    try:
        message.write(data)
    except BaseException:
        await message.abort()
        raise
    return await message.finish(envelope_sender, [recipient])
