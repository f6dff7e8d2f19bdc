"""What the SMTP client must know of a queued message before MAIL FROM.

``8BITMIME`` (RFC 6152): whether any byte of the message has the high bit
set, so ``BODY=8BITMIME`` can be declared.  ``SMTPUTF8`` (RFC 6531): as
upstream qmail-remote's ``checkutf8message`` does, a message needs it when
one of its ``Received`` header fields names a ``with UTF8…`` protocol (our
smtpd writes ``UTF8ESMTP``, ``UTF8ESMTPSA``… for SMTPUTF8 transactions).
``scan`` reads files: call it in a thread.
"""

from __future__ import annotations

import re

CHUNK = 65536
_WITH_UTF8 = re.compile(rb"\swith\s+UTF8", re.IGNORECASE)


def header_fields(header: bytes) -> list[bytes]:
    """The header section split into unfolded fields."""
    fields: list[bytes] = []
    for line in header.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        elif line.strip():
            fields.append(line.rstrip(b"\r"))
    return fields


def received_utf8(header: bytes) -> bool:
    """Whether a Received field of *header* says ``with UTF8…``."""
    return any(field[:9].lower() == b"received:" and _WITH_UTF8.search(field)
               for field in header_fields(header))


def scan(path, qqeh: bytes = b"", eight_bit: bool = True) -> tuple[bool, bool]:
    """(has 8-bit bytes, needs SMTPUTF8) for the message at *path* with
    the queue's extra headers *qqeh* in front.  With *eight_bit* False the
    body is not read past the header."""
    with open(path, "rb") as source:
        return scan_chunks(iter(lambda: source.read(CHUNK), b""), qqeh, eight_bit)


def scan_bytes(data: bytes, qqeh: bytes = b"") -> tuple[bool, bool]:
    """:func:`scan` of a message already in memory."""
    return scan_chunks((data,), qqeh)


def scan_chunks(chunks, qqeh: bytes = b"", eight_bit: bool = True) -> tuple[bool, bool]:
    """:func:`scan` over the message's bytes as an iterable of chunks; it
    stops taking chunks once it knows the answer."""
    header = bytearray(qqeh)
    high = not qqeh.isascii()
    in_header = True
    for chunk in chunks:
        if in_header:
            start = len(header)
            header += chunk
            end = header.find(b"\n\n", max(0, start - 1))
            if end == -1 and header[:1] == b"\n":
                end = 0
            if end != -1:
                del header[end + 1:]
                in_header = False
        if not high and eight_bit:
            high = not chunk.isascii()
        if not in_header and (high or not eight_bit):
            break
    return high, received_utf8(bytes(header))
