"""What a line-based protocol needs to drive a SASL mechanism.

A mechanism (see :mod:`indimail.auth.mechanisms`) is driven with *decoded*
bytes: the protocol base64-decodes the initial response and every client
line with :func:`decode_response` and base64-encodes every challenge with
:func:`encode_challenge`. ``start()`` and ``respond()`` return Deferreds
firing with a :class:`Challenge` (send ``334 <base64>`` and feed the next
line to ``respond``), a :class:`Success` (reply 235) or an
:class:`AuthFailed` carrying its SMTP reply.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass


@dataclass(frozen=True)
class Challenge:
    """Send this (raw) challenge and wait for the client's next line."""

    data: bytes


@dataclass(frozen=True)
class Success:
    """Authenticated: *avatar* provides ``IAuthenticatedUser``."""

    avatar: object
    mechanism: str


@dataclass(frozen=True)
class AuthFailed:
    """Authentication ended without success; answer with this reply."""

    code: int
    enhanced: str
    text: str

    def reply(self) -> bytes:
        return f"{self.code} {self.text} (#{self.enhanced})".encode("ascii")


BAD_CREDENTIALS = AuthFailed(535, "5.7.8", "authorization failed")
TEMP_FAILURE = AuthFailed(454, "4.3.0", "temporary authentication failure")
MALFORMED = AuthFailed(501, "5.5.2", "malformed auth input")
CANCELLED = AuthFailed(501, "5.0.0", "auth exchange cancelled")


class MalformedResponse(ValueError):
    """A client line that is not valid base64 (or a cancelled exchange)."""

    def __init__(self, failure: AuthFailed):
        super().__init__(failure.text)
        self.failure = failure


def decode_response(line: bytes) -> bytes:
    """Decode one client line (without CRLF); ``*`` cancels (RFC 4954 §4)."""
    line = line.strip()
    if line == b"*":
        raise MalformedResponse(CANCELLED)
    if line == b"=":  # an empty initial response
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse(MALFORMED) from None


def encode_challenge(data: bytes) -> bytes:
    """The base64 text to put after ``334 ``."""
    return base64.b64encode(data)
