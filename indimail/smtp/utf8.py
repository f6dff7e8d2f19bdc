"""SMTPUTF8 (RFC 6531): which addresses need it, and how the queue learns of it.

An address with any byte above 127 is an internationalised one: accepted
only in a transaction whose MAIL carried the ``SMTPUTF8`` parameter (and
only when the extension is offered), else refused ``553 ... (#5.6.7)``
as RFC 6531 §3.5 asks.  Inside such a transaction the bytes must be valid
UTF-8 (the protocol decodes commands with ``surrogateescape``, so invalid
bytes show up as lone surrogates).

The queue is told the way upstream tells it: qmail-smtpd writes
``UTF8ESMTP`` (``UTF8ESMTPS``, ``…A``) as the protocol of its Received
line, and qmail-remote's ``checkutf8message()`` looks for that (and for
non-ASCII envelope addresses) to decide whether to send ``SMTPUTF8``
onwards.  No envelope record changes, so C tools read our queue as is.
"""

from __future__ import annotations


def is_ascii(address: str) -> bool:
    """True when *address* needs no SMTPUTF8."""
    return address.isascii()


def is_utf8(address: str) -> bool:
    """True when *address* came from valid UTF-8 bytes."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate: an invalid byte on the wire
        return False
    return True


def address_allowed(address: str, smtputf8: bool) -> bool:
    """Whether *address* may be used in a transaction with (or without) SMTPUTF8."""
    if is_ascii(address):
        return True
    return smtputf8 and is_utf8(address)


def protocol_word(protocol: str, smtputf8: bool) -> str:
    """The Received line's protocol: ``ESMTPSA`` → ``UTF8ESMTPSA`` (upstream)."""
    return "UTF8" + protocol if smtputf8 else protocol
