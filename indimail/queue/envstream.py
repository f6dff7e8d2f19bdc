"""Reading qmail-queue's envelope protocol from a file descriptor.

``F<sender>\\0`` then ``T<recipient>\\0`` ... then one more ``\\0``
(reference §1).  A wrong leading byte is exit 79, an address of 1003
bytes or more exit 11, EOF before the final ``\\0`` exit 54.
"""

from __future__ import annotations

import os

from . import errors
from .envelope import MAX_ADDRESS
from .errors import QueueError


class _Reader:
    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            try:
                self.buf = os.read(self.fd, 4096)
            except OSError:
                raise QueueError(errors.READ_ERROR) from None
            self.pos = 0
            if not self.buf:
                raise QueueError(errors.READ_ERROR)
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def address(self) -> str:
        out = bytearray()
        while len(out) < MAX_ADDRESS - 1:
            b = self.byte()
            if b == 0:
                return out.decode("utf-8", "surrogateescape")
            out.append(b)
        if self.byte() == 0:   # exactly MAX_ADDRESS - 1 bytes
            return out.decode("utf-8", "surrogateescape")
        raise QueueError(errors.TOO_LONG)


def read_envelope(fd: int) -> tuple[str, list[str]]:
    """The sender and recipients qmail-queue's client wrote on *fd*."""
    reader = _Reader(fd)
    if reader.byte() != ord("F"):
        raise QueueError(errors.ENVELOPE_FORMAT)
    sender = reader.address()
    recipients = []
    while True:
        kind = reader.byte()
        if kind == 0:
            return sender, recipients
        if kind != ord("T"):
            raise QueueError(errors.ENVELOPE_FORMAT)
        recipients.append(reader.address())
