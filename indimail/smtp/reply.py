"""SMTP replies: the texts qmail-smtpd (indimail-mta ``smtpd.c``) sends.

Reply texts are upstream's, word for word, so admins and their log
scanners see what they always saw; each error carries its reply
(house rule 3) and the protocol just writes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) SMTP reply.

    *enhanced*: its RFC 3463 code when it is not the one in the text
    (``""``: none, see :mod:`~indimail.smtp.enhanced`)."""

    code: int
    lines: tuple[str, ...]
    enhanced: str | None = None

    @classmethod
    def of(cls, code: int, *lines: str) -> "Reply":
        return cls(code, tuple(lines) or ("",))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def to_bytes(self) -> bytes:
        """``code-line`` for all but the last line, ``code line`` for it."""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            out.append(f"{self.code}{sep}{line}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class SMTPError(Exception):
    """A command failed; *reply* is what the client is told.

    *close* asks the protocol to drop the connection after the reply (as
    upstream's ``_exit`` after some errors)."""

    def __init__(self, code: int, text: str, *more: str, close: bool = False):
        self.reply = Reply.of(code, text, *more)
        self.close = close
        super().__init__(f"{code} {text}")


# Upstream texts (smtpd.c).  Placeholders are filled with str.format.
OK = "ok"
GO_AHEAD = "go ahead"
FLUSHED = "flushed"
QUEUED = "ok {when} qp {msgid}"
VRFY = "Cannot VRFY user, but will accept message and attempt delivery (#2.7.0)"
NOT_RECOGNIZED = "command {cmd} not recognized (#5.5.2)"
NOT_RECOGNIZED_ARG = "command {cmd} {arg} not recognized (#5.5.2)"
NOT_IMPLEMENTED = "command {cmd} not implemented (#5.5.1)"
SYNTAX_ADDRESS = "syntax error in address (#5.1.3)"
PARAM_SYNTAX = "invalid parameter syntax (#5.3.2)"
MAIL_FIRST = "MAIL first (#5.5.1)"
RCPT_FIRST = "RCPT first (#5.5.1)"
NO_RELAY = ("sorry, that domain isn't allowed to be relayed thru this MTA "
            "without authentication #5.7.1")
SIZE_EXCEEDED = "sorry, that message size exceeds my databytes limit (#5.3.4)"
TOO_MANY_HOPS = "too many hops, this message is looping (#5.4.6)"
BARE_LF = "Sorry, I received Bare LF. (#4.6.0)"
TIMEOUT = "Sorry, I reached a timeout reading from client (#4.4.2)"
TOO_LONG = "sorry, the given command is too long! (#5.5.2)"
QUEUE_TEMP = "Sorry, I got a temporary queue failure (#4.3.0)"
LOCAL_FAILURE = "Sorry, there is a local system failure (#4.3.0)"
CLOSING = "{greeting} closing connection"

# STARTTLS and AUTH (smtpd.c smtp_tls(), smtp_auth(), err_auth*()).
READY_FOR_TLS = "ready for tls"
TLS_NO_PARAMS = "Syntax error (no parameters allowed) (#5.5.4)"
TLS_UNAVAILABLE = "TLS not available: missing certificate (#4.3.0)"
STARTTLS_FIRST = "must issue STARTTLS first (#5.7.0)"
AUTH_OK = "ok, go ahead (#2.0.0)"
AUTH_FAILED = "authorization failed (#5.7.1)"
AUTH_NOT_AVAILABLE = "auth not available (#5.3.3)"
AUTH_ALREADY = "you're already authenticated (#5.5.0)"
AUTH_IN_TRANSACTION = "no auth during mail transaction (#5.5.0)"
AUTH_UNIMPLEMENTED = "auth type unimplemented (#5.5.1)"
AUTH_PROHIBITED = "auth type prohibited (#5.7.0)"
AUTH_REQUIRED = "authentication required (#5.7.1)"

# Session limits (smtpd.c err_mrc(), greetdelay_check()).
TOO_MANY_RCPTS = "sorry, too many recipients (#5.7.1)"
EARLY_TALKER = ("SMTP protocol violation. Polite people say hello after the server "
                "greets them (#5.7.1)")

# Extensions upstream lacks (CHUNKING, RFC 3030) or handles silently
# (SMTPUTF8, RFC 6531): texts in upstream's style, codes from the RFCs.
BAD_SEQUENCE = "bad sequence of commands (#5.5.1)"
BDAT_SYNTAX = "syntax error in BDAT chunk size (#5.5.4)"
BDAT_OK = "ok {size} octets received"
NON_ASCII = "sorry, non-ASCII addresses not permitted for that sender/recipient (#5.6.7)"
