"""A small SMTP client protocol for remote delivery.

The protocol only turns bytes into replies (qmail-remote's ``smtpcode``:
a reply whose code is below 200 or whose lines are malformed counts as 400)
and commands into bytes; the conversation is driven by ``remote.py``.  It
is its transport's push producer so the sender can wait for the transport
buffer to drain while streaming a large message.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from twisted.internet import defer, protocol
from zope.interface import implementer
from twisted.internet.interfaces import IHandshakeListener, IPushProducer

MAX_TEXT = 5000  # qmail-remote's HUGESMTPTEXT


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: the effective code and the raw lines (``\\n``-joined)."""

    code: int
    text: str


def parse_reply(lines: list[str]) -> Reply:
    """qmail's rules: code < 200 or a 4th character other than space or
    ``-`` makes the reply count as a temporary failure (400)."""
    first = lines[0]
    code = int(first[:3]) if first[:3].isdigit() else 0
    bad = code < 200 or any(len(line) < 4 or line[3] not in " -" for line in lines)
    text = "\n".join(lines)[:MAX_TEXT]
    return Reply(400 if bad else code, text)


def ehlo_keywords(reply: Reply) -> dict[str, str]:
    """The EHLO extensions (upper-cased keyword → parameters), first line
    (the greeting name) left out.  ``AUTH=LOGIN`` (old servers) counts as AUTH."""
    out: dict[str, str] = {}
    for line in reply.text.split("\n")[1:]:
        keyword, _, params = line[4:].strip().partition(" ")
        if keyword.upper().startswith("AUTH="):
            keyword, params = "AUTH", keyword[5:] + " " + params
        if keyword:
            out.setdefault(keyword.upper(), params.strip())
    return out


# The mechanism choice and the exchanges live in saslclient; these names
# stay for callers of the first version.
from indimail.auth.mechanisms import CRAM_HASHES as _CRAM_HASH  # noqa: E402
from indimail.delivery.saslclient import AUTH_PREFERENCE  # noqa: E402,F401
from indimail.delivery.saslclient import choose as choose_auth  # noqa: E402,F401


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def auth_plain(user: str, password: str) -> str:
    """The PLAIN initial response (empty authorisation identity)."""
    return b64(b"\0" + user.encode() + b"\0" + password.encode())


def auth_cram(mechanism: str, user: str, password: str, challenge: str) -> str:
    """The reply to a CRAM-* challenge (``334 base64``)."""
    try:
        raw = base64.b64decode(challenge.strip(), validate=False)
    except ValueError:
        raw = b""
    digest = hmac.new(password.encode(), raw, _CRAM_HASH[mechanism]).hexdigest()
    return b64(f"{user} {digest}".encode())


def xtext(text: str) -> str:
    """RFC 3461 xtext, for ``MAIL FROM:<..> AUTH=<user>``."""
    return "".join(ch if 33 <= ord(ch) <= 126 and ch not in "+=" else f"+{ord(ch):02X}"
                   for ch in text)


class DataEncoder:
    """LF → CRLF and dot-stuffing for the DATA phase, chunk by chunk."""

    def __init__(self):
        self.at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        out = []
        parts = chunk.split(b"\n")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if part:
                if self.at_line_start and part[:1] == b".":
                    out.append(b".")
                out.append(part)
                self.at_line_start = False
            if i < last:
                out.append(b"\r\n")
                self.at_line_start = True
        return b"".join(out)

    @property
    def complete(self) -> bool:
        """Whether the message ended with a newline (or was empty)."""
        return self.at_line_start


@implementer(IPushProducer, IHandshakeListener)
class SMTPClientProtocol(protocol.Protocol):
    """Bytes ↔ replies; commands are written with :meth:`send`."""

    def __init__(self):
        self._buffer = b""
        self._lines: list[str] = []
        self._replies: list[Reply] = []
        self._waiter: defer.Deferred | None = None
        self._lost = None
        self._paused = False
        self._resumed: defer.Deferred | None = None
        self._lost_waiters: list[defer.Deferred] = []
        self._handshake_waiters: list[defer.Deferred] = []
        self.handshake_done = False

    # -- transport side -----------------------------------------------------

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes):
        self._buffer += data
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            self._line(raw.replace(b"\r", b"").decode("utf-8", "replace"))

    def _line(self, line: str):
        self._lines.append(line)
        if len(line) >= 4 and line[3] == "-":
            return
        reply, self._lines = parse_reply(self._lines), []
        self._push(reply)

    def _push(self, reply) -> None:
        """Hand a complete reply to the waiting reader, or keep it."""
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(reply)
        else:
            self._replies.append(reply)

    def handshakeCompleted(self):
        """IHandshakeListener: the TLS handshake is done."""
        self.handshake_done = True
        waiters, self._handshake_waiters = self._handshake_waiters, []
        for d in waiters:
            d.callback(None)

    def when_handshake(self) -> defer.Deferred:
        """Fires once the TLS handshake completed; errbacks if the
        connection is lost first."""
        if self.handshake_done:
            return defer.succeed(None)
        if self._lost is not None:
            return defer.fail(self._lost)
        d = defer.Deferred(lambda d: self._handshake_waiters.remove(d))
        self._handshake_waiters.append(d)
        return d

    def when_lost(self) -> defer.Deferred:
        """Fires (with None) once the connection is gone."""
        d = defer.Deferred()
        if self._lost is not None:
            d.callback(None)
        else:
            self._lost_waiters.append(d)
        return d

    def connectionLost(self, reason=protocol.connectionDone):
        self._lost = reason
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.errback(reason)
        if self._resumed is not None:
            resumed, self._resumed = self._resumed, None
            resumed.errback(reason)
        handshakes, self._handshake_waiters = self._handshake_waiters, []
        for d in handshakes:
            d.errback(reason)

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        if self._resumed is not None:
            resumed, self._resumed = self._resumed, None
            resumed.callback(None)

    def stopProducing(self):
        self._paused = True

    # -- conversation side ----------------------------------------------------

    def next_reply(self) -> defer.Deferred:
        """Fires with the next :class:`Reply`; errbacks when the connection is lost."""
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self._lost is not None:
            return defer.fail(self._lost)
        if self._waiter is not None:
            raise RuntimeError("already waiting for a reply")
        self._waiter = defer.Deferred(lambda d: self._cancel_wait())
        return self._waiter

    def _cancel_wait(self):
        self._waiter = None

    def between_replies(self) -> bool:
        """Whether the connection is open with no reply pending or half
        read: a transaction can start on it."""
        return (self._lost is None and self._waiter is None and not self._buffer
                and not self._lines and not self._replies)

    def send(self, data: bytes) -> None:
        if self._lost is None:
            self.transport.write(data)

    def command(self, line: str) -> None:
        self.send(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def drained(self) -> defer.Deferred:
        """Fires when the transport wants more data."""
        if self._lost is not None:
            return defer.fail(self._lost)
        if not self._paused:
            return defer.succeed(None)
        if self._resumed is None:
            self._resumed = defer.Deferred(lambda d: setattr(self, "_resumed", None))
        return self._resumed

    def start_tls(self, options) -> bool:
        """Switch the connection to TLS (after the peer's 220 to STARTTLS);
        False when the transport cannot."""
        start = getattr(self.transport, "startTLS", None)
        if self._lost is not None or start is None:
            return False
        # Whatever came in clear text after the 220 must not be read as if
        # it came over TLS (the STARTTLS command-injection flaw).
        self._buffer, self._lines, self._replies = b"", [], []
        start(options)
        return True

    def abort(self) -> None:
        """Drop the connection now (the peer must not take a partial message)."""
        if self._lost is None and self.transport is not None:
            self.transport.unregisterProducer()
            self.transport.abortConnection()

    def close(self) -> None:
        if self._lost is None and self.transport is not None:
            self.transport.unregisterProducer()
            self.transport.loseConnection()
