"""CHUNKING (RFC 3030): the BDAT command's argument and its byte stream.

``BDAT <size> [LAST]`` is followed by exactly *size* octets of message —
no dot-stuffing, no end marker, so nothing inside a chunk can ever end the
message or be read as a command (no SMTP smuggling by construction).

:class:`BdatDecoder` turns the chunks into queue bytes the way
:class:`~indimail.smtp.data.DataDecoder` does for DATA (``CRLF`` → ``LF``,
a bare CR kept; a bare LF is a line end too, there is nothing to smuggle
past it) and shares its bookkeeping: ``size`` counted past the
``DATABYTES`` limit (``overflow``; nothing more is handed out), ``hops``
(Received/Delivered header lines) for MAXHOPS.  A CRLF split between two
chunks is joined.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import DataDecoder

MAX_CHUNK_DIGITS = 18    # sizes beyond this are not a number we take


@dataclass(frozen=True)
class BdatArgs:
    size: int
    last: bool


def parse_bdat(arg: str) -> BdatArgs | None:
    """``"1000 LAST"`` → BdatArgs(1000, True); None on a syntax error."""
    words = arg.split()
    if not words or len(words) > 2:
        return None
    size = words[0]
    if not size.isdigit() or not size.isascii() or len(size) > MAX_CHUNK_DIGITS:
        return None
    if len(words) == 2 and words[1].upper() != "LAST":
        return None
    return BdatArgs(int(size), len(words) == 2)


class BdatDecoder(DataDecoder):
    """Decoder of one message's BDAT chunks (all of them, in order)."""

    def __init__(self, limit: int = 0):
        super().__init__(limit, allow_bare_lf=True)
        self._cr = False          # the previous chunk ended in CR

    def feed_chunk(self, data: bytes) -> bytes:
        """The queue bytes for *data*, any part of a chunk."""
        if not data:
            return b""
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):   # may be the first half of a CRLF
            self._cr = True
            data = data[:-1]
        return self._emit([data.replace(b"\r\n", b"\n")])

    def finish(self) -> bytes:
        """What is still held back at the end of the message (a final CR)."""
        self.ended = True
        if self._cr:
            self._cr = False
            return self._emit([b"\r"])
        return b""
