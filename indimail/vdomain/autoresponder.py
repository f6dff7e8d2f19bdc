"""The autoresponder's rules (indimail-mta ``autoresponder.c``, RFC 3834).

A reply goes to the envelope sender only when the message is not from a
system account, a bounce, a list owner, a ``badrcptto`` address; carries no
list header (List-ID, Mailing-List, X-Mailing-List, X-ML-Name), no
``Precedence: junk|bulk|list``, no ``Auto-Submitted`` other than ``no``, not
our own Delivered-To line (a loop), no ``X-Bogosity: Yes``; names the
recipient in To/Cc/Bcc/Resent-* (unless lax); and when the sender got fewer
than *max* replies within *interval* seconds (files ``PID.TIME.SENDER`` in the
records directory).  Each rule raises :class:`Ignore` with upstream's words.

The pure parts take ``now``; :func:`count_history` touches the directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from email.utils import formataddr, getaddresses
from pathlib import Path

from indimail.queue.bounce import date822
from indimail.queue.inject import Header

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LIST_HEADERS = (("list-id", "List-ID"), ("mailing-list", "Mailing-List"),
                ("x-mailing-list", "X-Mailing-List"), ("x-ml-name", "X-ML-Name"))
HIDDEN = "recipient list not shown: "
WEEK = 86400 * 7


class Ignore(Exception):
    """No reply for this message; the text says why."""


@dataclass
class Options:
    """autoresponder's command line."""

    message_file: str = ""
    directory: str = ""
    copy: bool = False                 # -c
    quiet: bool = False                # -q
    lax: bool = False                  # -l
    no_links: bool = False             # -L
    no_send: bool = False              # -N
    max_replies: int = 1               # -n
    interval: int = WEEK               # -t (negative: no rate limit)
    content_type: str = ""             # -T
    subject_prefix: str = "Autoreply: Re: "   # -s
    subject: str | None = None         # -S
    start: float | None = None         # -b
    end: float | None = None           # -e
    from_addr: str | None = None       # -f


@dataclass
class Original:
    """What the reply takes from the message's header."""

    return_path: str = ""
    from_: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    date: str = ""
    bogosity: str = ""
    mailer: str = "unknown"
    subject: str = "Your mail"
    message_id: str = ""


def check_period(options: Options, now: float) -> None:
    """``-b``/``-e``: outside the validity period nothing is answered."""
    if options.start is not None and now < options.start:
        raise Ignore("autoresponder yet to mature")
    if options.end is not None and now > options.end:
        raise Ignore("autoresponder expired")


def recipient_address(recipient: str, host: str) -> str:
    """The user's address: ``$RECIPIENT`` less the ``$HOST-`` prefix qmail-local
    gives a virtual domain's recipient (``example.com-bob@example.com``)."""
    prefix = host + "-"
    return recipient[len(prefix):] if host and recipient.startswith(prefix) else recipient


def lax_for_dtline(recipient: str, dtline: str, host: str) -> bool:
    """Upstream turns lax mode on when DTLINE names the recipient itself (a
    delivery that did not come through an alias)."""
    value = dtline.split(":", 1)[1].strip() if ":" in dtline else ""
    return recipient_address(value, host).lower().startswith(recipient.lower())


def check_sender(sender: str) -> None:
    """``check_sender()`` less badrcptto (the caller looks that up)."""
    sender = sender.lower()
    local, at, _domain = sender.rpartition("@")
    if not sender:
        raise Ignore("SENDER is empty, mail came from system account")
    if sender == "#@[]":
        raise Ignore("SENDER is <#@[]> (double bounce message)")
    if sender == "mailer-daemon" or local == "mailer-daemon":
        raise Ignore("SENDER was mailer-daemon")
    if not at:
        raise Ignore("SENDER did not contain a hostname")
    if local.endswith("-request") or sender.startswith("owner-"):
        raise Ignore("SENDER was owner list")


def _first_word(value: str) -> str:
    return value.split()[0].lower() if value.split() else ""


def read_original(header: Header, dtline: str) -> Original:
    """The fields of *header* the reply uses; :class:`Ignore` for lists,
    bulk mail, automatic replies and our own Delivered-To line."""
    names = header.names()
    for name, label in LIST_HEADERS:
        if name in names:
            raise Ignore(f"Message appears to be from a mailing list ({label} header)")
    mine = " ".join(dtline.split(":", 1)[1].split()).lower() if ":" in dtline else None
    if mine is not None and any(v.lower() == mine for v in header.values("delivered-to")):
        raise Ignore("Message already has my Delivered-To line")
    for value in header.values("auto-submitted"):
        word = _first_word(value)
        if word.startswith("auto-replied"):
            raise Ignore("Message has a Auto-Submitted header as auto-replied")
        if not word.startswith("no"):
            raise Ignore('Message does not haveAuto-Submitted header as "no"')
    for value in header.values("precedence"):
        if _first_word(value) in ("junk", "bulk", "list"):
            raise Ignore("Message has a junk, bulk, or list precedence header")
    last = lambda name, default="": (header.values(name) or [default])[-1]  # noqa: E731
    return Original(
        return_path=last("return-path"), from_=last("from"),
        to=header.values("to"), cc=header.values("cc"), bcc=header.values("bcc"),
        resent=[v for n in ("resent-to", "resent-cc", "resent-bcc") for v in header.values(n)],
        date=last("date"), bogosity=last("x-bogosity"),
        mailer=last("user-agent", last("x-mailer", "unknown")),
        subject=last("subject", "Your mail"), message_id=last("message-id"))


def addressed_to(original: Original, recipient: str) -> bool:
    """Whether To, Cc, Bcc or a Resent- field names *recipient* (or hides its
    list: ``recipient list not shown:``)."""
    values = original.to + original.cc + original.bcc + original.resent
    if any(v.lower().startswith(HIDDEN) for v in values):
        return True
    wanted = recipient.lower()
    return any(addr.lower() == wanted for _n, addr in getaddresses(values))


def check_message(original: Original, recipient: str, lax: bool) -> None:
    if not lax and not addressed_to(original, recipient):
        raise Ignore("Message header does not contain recipient")
    if original.bogosity.lower().startswith("yes,"):
        raise Ignore("Message is spam")


def count_history(directory: Path, sender: str, now: float, options: Options,
                  pid: int | None = None) -> str | None:
    """Record a reply to *sender* in *directory*; None when *sender* already
    had ``max_replies`` within the interval (nothing is recorded then).
    Records past the interval are removed.  The new record is a hard link
    to another live one when it can be (one inode for all).  Returns the
    record's name (blocking)."""
    pid = os.getpid() if pid is None else pid
    who = sender.replace("/", ":")
    name = f"{pid}.{int(now)}.{who}"
    count, last = 0, None
    for entry in os.scandir(directory):
        parts = entry.name.split(".", 2)
        if entry.name.startswith(".") or len(parts) != 3 or not parts[0].isdigit() \
                or not int(parts[0]) or not parts[1].isdigit():
            continue
        if options.interval < 0 or now - int(parts[1]) > options.interval:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
            continue
        if parts[2] == who:
            count += 1
            if count >= options.max_replies:
                return None
        last = entry.name
    target = directory / name
    if last is not None and not options.no_links:
        try:
            os.link(directory / last, target)
            return name
        except OSError:
            pass
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444))
    except FileExistsError:
        pass
    return name


def substitute(text: str, original: Original, recipient: str, now: float) -> str:
    """The message file's ``%`` escapes: %S subject, %D date, %d now, %t
    the recipient, %T/%C/%B the first To/Cc/Bcc address, %F From, %R Return-Path,
    %r X-Bogosity, %M mailer, %m Message-ID, %% a %; any other stays."""
    def first(values: list[str]) -> str:
        found = [formataddr(pair) for pair in getaddresses(values) if pair[1]]
        return found[0] if found else ""
    day = DAYS[time.gmtime(int(now)).tm_wday]
    table = {"S": original.subject, "D": original.date, "d": f"{day}, {date822(now)}",
             "t": recipient, "T": first(original.to), "C": first(original.cc),
             "B": first(original.bcc), "F": original.from_, "R": original.return_path,
             "r": original.bogosity, "M": original.mailer, "m": original.message_id,
             "%": "%"}
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "%" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def reply_header(original: Original, options: Options, *, sender: str, from_line: str,
                 now: float, boundary: str | None = None) -> str:
    """The reply's header block (RFC 3834: Auto-Submitted, In-Reply-To,
    References) up to and including the blank line."""
    lines = ["Auto-Submitted: auto-replied", f"Date: {date822(now)}", f"From: {from_line}",
             f"To: {sender}"]
    if original.message_id:
        lines += [f"In-Reply-To: {original.message_id}",
                  f"References: {original.message_id}"]
    if boundary is not None:
        lines += ["Mime-Version: 1.0", "Content-Type: multipart/mixed;",
                  f'\tboundary="{boundary}"']
    elif options.content_type:
        lines += ["Mime-Version: 1.0", options.content_type]
    subject = options.subject if options.subject is not None else original.subject
    lines.append(f"Subject: {options.subject_prefix}{subject}")
    return "\n".join(lines) + "\n\n"


def from_line(options: Options, recipient: str, env, bouncefrom: str,
              bouncehost: str) -> str:
    """``SERVICE_RESPONDER`` (a name, default AutoResponse) answers as
    ``bouncefrom@bouncehost``; otherwise ``-f`` or the recipient."""
    service = env.get("SERVICE_RESPONDER")
    if service is not None:
        return f"{service or 'AutoResponse'} <{bouncefrom}@{bouncehost}>"
    return options.from_addr or recipient


def mime_parts(boundary: str) -> tuple[bytes, bytes, bytes]:
    """``-c``: the text before the response, between it and the copy of the
    message, and after the copy."""
    return (f"This is a multi-part message in MIME format.\n\n--{boundary}\n\n".encode(),
            (f"\n--- Enclosed below is a copy of the message.\n\n--{boundary}\n"
             "Content-Type: message/rfc822\n\n").encode(),
            f"\n--{boundary}--\n\n".encode())


def parse_date(text: str) -> float:
    """``-b``/``-e``: ``YYYY-mm-dd HH:MM:SS`` in local time."""
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))
