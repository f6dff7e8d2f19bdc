"""The QMTP client side (qmail-remote's ``qmtp()``; protocol by D. J.
Bernstein, https://cr.yp.to/proto/qmtp.txt).

One transaction is three netstrings: the message (its first byte ``\\n``
says the lines end in LF, as in the queue), the sender, and a netstring of
the recipients' netstrings.  The server answers one netstring per
recipient, starting with ``K`` (accepted), ``Z`` (temporary) or ``D``
(permanent).  This module only encodes and decodes; ``remote.py`` drives
the conversation over :class:`QMTPClientProtocol`.
"""

from __future__ import annotations

from dataclasses import dataclass

from indimail.delivery.smtpclient import SMTPClientProtocol

MAX_LENGTH = 200000000   # upstream refuses longer replies


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


def message_header(length: int) -> bytes:
    """The start of the message netstring for *length* bytes of message
    (the ``\\n`` line-ending byte is counted in)."""
    return str(length + 1).encode() + b":\n"


def envelope(sender: str, recipients: list[str]) -> bytes:
    """What follows the message: end of its netstring, sender, recipients."""
    rcpts = b"".join(netstring(r.encode("utf-8", "surrogateescape")) for r in recipients)
    return b"," + netstring(sender.encode("utf-8", "surrogateescape")) + netstring(rcpts)


@dataclass(frozen=True)
class QMTPReply:
    """One recipient's answer: ``K``, ``Z`` or ``D`` and the server's text."""

    status: str
    text: str


class QMTPProtocolError(Exception):
    """The server did not talk proper QMTP."""


def printable(text: bytes) -> str:
    """Upstream's rule for the report: bytes outside 32..126 become ``?``."""
    return "".join(chr(b) if 32 <= b <= 126 else "?" for b in text)


class QMTPClientProtocol(SMTPClientProtocol):
    """Netstring replies instead of SMTP lines; the producer, drain and
    reply-waiting machinery is the SMTP client's."""

    def dataReceived(self, data: bytes):
        self._buffer += data
        while self._buffer:
            head, colon, rest = self._buffer.partition(b":")
            if not colon:
                if not head.isdigit() or len(head) > 10:
                    self._bad()
                return
            if not head.isdigit() or int(head) > MAX_LENGTH or int(head) == 0:
                self._bad()
                return
            length = int(head)
            if len(rest) < length + 1:
                return
            body, comma, self._buffer = rest[:length], rest[length:length + 1], rest[length + 1:]
            if comma != b"," or body[:1] not in (b"K", b"Z", b"D"):
                self._bad()
                return
            self._push(QMTPReply(body[:1].decode(), printable(body[1:])))

    def _bad(self):
        self._buffer = b""
        self._push(QMTPProtocolError("recipient did not talk proper QMTP"))
        self.abort()
