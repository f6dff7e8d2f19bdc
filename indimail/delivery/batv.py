"""BATV signing of the envelope sender on remote delivery (reference §9).

``prvs=0DDDhhhhhh=<sender>``: DDD is the day number ``(now / 86400) % 1000``
zero-padded to three digits, hhhhhh the first three bytes (lower-case hex)
of MD5 over ``"0DDD" + sender + key``.  A sender already signed
(``prvs=``) is left alone, and ``sb*-`` in front of a sender means "do not
sign" (the prefix is removed), as in qmail-remote's ``sign_batv``.

Control files (names can be changed with the variables in brackets):
``batvkey`` [BATVKEY] holds the key (no key, no signing);
``batvnosignremote`` [BATVNOSIGNREMOTE] lists recipient domains never
signed for, ``batvnosignlocals`` [BATVNOSIGNLOCALS] sender domains never
signed; ``batvkeystale`` [BATVKEYSTALE] the days a signature stays valid
(7), used by :func:`verify`.
"""

from __future__ import annotations

import hashlib
import hmac

NOSIGN_PREFIX = "sb*-"
STALE_DAYS = 7


def day_number(now: float) -> int:
    return int(now // 86400) % 1000


def tag(sender: str, key: str, day: int) -> str:
    """``0DDDhhhhhh`` for *sender* on *day*."""
    kdate = f"0{day:03d}"
    digest = hashlib.md5((kdate + sender + key).encode("utf-8", "surrogateescape")).digest()
    return kdate + digest[:3].hex()


def sign(sender: str, key: str, now: float) -> str:
    """The signed sender (or *sender* unchanged / unprefixed, see above)."""
    if not sender or not key or sender.startswith("prvs="):
        return sender
    if sender.startswith(NOSIGN_PREFIX):
        return sender[len(NOSIGN_PREFIX):]
    return f"prvs={tag(sender, key, day_number(now))}={sender}"


def verify(address: str, key: str, now: float, stale_days: int = STALE_DAYS) -> str | None:
    """The original address when *address* is a valid, fresh ``prvs=``
    signature under *key*, else None (for bounce checking)."""
    if not address.lower().startswith("prvs="):
        return None
    value, sep, original = address[5:].partition("=")
    if not sep or len(value) != 10 or not value[:4].isdigit():
        return None
    day = int(value[1:4])
    if not hmac.compare_digest(tag(original, key, day), value.lower()):
        return None
    age = (day_number(now) - day) % 1000
    return original if age <= stale_days else None


def domain_of(address: str) -> str:
    return address[address.rfind("@") + 1:].lower() if "@" in address else ""


def sign_for(sender: str, recipient_domain: str, env, control, now: float) -> str:
    """qmail-remote's choice: sign *sender* for mail to *recipient_domain*
    unless a key is
    missing or a skip list names the recipient's or the sender's domain.
    Reads control files (call in a thread)."""
    if not sender:
        return sender
    key = (control.value(env.get("BATVKEY") or "batvkey") or "").strip()
    if not key:
        return sender
    remote = {line.strip().lower()
              for line in control.lines(env.get("BATVNOSIGNREMOTE") or "batvnosignremote")}
    locals_ = {line.strip().lower()
               for line in control.lines(env.get("BATVNOSIGNLOCALS") or "batvnosignlocals")}
    if recipient_domain.lower() in remote or domain_of(sender) in locals_:
        return sender
    return sign(sender, key, now)
