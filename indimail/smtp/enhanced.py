"""ENHANCEDSTATUSCODES (RFC 2034, codes of RFC 3463) for SMTP replies.

qmail-smtpd's texts already end in their enhanced code — ``sorry, that
domain isn't allowed ... #5.7.1``, ``MAIL first (#5.5.1)`` — so once the
client has been offered the extension (EHLO) every 2xx/4xx/5xx reply line
gets that code in front and the text stays word for word upstream's::

    553 5.7.1 sorry, that domain isn't allowed to be relayed thru ... #5.7.1

A reply without a code in its text (``250 ok``, a plugin's ``550 go
away``) gets the class default ``X.0.0``; a reply may carry its own code
(:attr:`Reply.enhanced`): ``""`` marks the replies RFC 2034 exempts (the
250 to HELO/EHLO).  A text code of the wrong class (``451 ... (#5.7.1)``)
keeps its subject and detail under the reply's class: ``4.7.1``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

from .reply import Reply

# "(#5.7.1)" or "#5.7.1" at the very end of the text
_IN_TEXT = re.compile(r"#([245])\.(\d{1,3})\.(\d{1,3})\)?\s*$")
_AT_START = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?:\s|$)")


def code_of(reply: Reply) -> str | None:
    """The enhanced code for *reply*; None for replies that take none
    (1xx/3xx, or marked exempt)."""
    klass = reply.code // 100
    if klass not in (2, 4, 5):
        return None
    if reply.enhanced is not None:
        return reply.enhanced or None
    for line in reversed(reply.lines):
        m = _IN_TEXT.search(line)
        if m:
            return f"{klass}.{m.group(2)}.{m.group(3)}"
    return f"{klass}.0.0"


def enhance(reply: Reply) -> Reply:
    """*reply* with its enhanced code in front of every line (lines that
    already start with a code are left alone)."""
    code = code_of(reply)
    if code is None:
        return reply
    lines = tuple(line if _AT_START.match(line) else f"{code} {line}" for line in reply.lines)
    return replace(reply, lines=lines, enhanced="")


def exempt(reply: Reply) -> Reply:
    """*reply* marked as one that never carries an enhanced code."""
    return replace(reply, enhanced="")


def with_code(reply: Reply, code: str) -> Reply:
    """*reply* with an explicit enhanced code (``2.1.5`` for a recipient)."""
    return replace(reply, enhanced=code)


@lru_cache(maxsize=512)
def wire(reply: Reply, with_codes: bool) -> bytes:
    """*reply* as sent (enhanced when *with_codes*): most replies are the
    same few (``250 2.1.5 ok`` to every RCPT), so their bytes are made once."""
    return (enhance(reply) if with_codes else reply).to_bytes()
