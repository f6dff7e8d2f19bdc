"""The quota kept in ``pw_shell``: ``NOQUOTA`` or ``<bytes>[k|m|g][,<count>]``.

Parsing follows upstream ``parse_quota.c``: the part after the first comma is
the message count (0 when absent), ``NOQUOTA`` means no size limit (0), the
leading digits are the size and the first k/m/g (any case) multiplies it by
1024, 1024² or 1024³.  Maildir++ style ``5000000S,100C`` reads the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NOQUOTA = "NOQUOTA"
_MULT = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
_DIGITS = re.compile(r"\s*([+-]?\d+)")


class QuotaError(ValueError):
    """A quota string that is not a number nor NOQUOTA."""


@dataclass(frozen=True)
class Quota:
    """A user's limits; 0 means unlimited for both."""

    size: int = 0
    count: int = 0

    @property
    def unlimited(self) -> bool:
        return self.size == 0


def _number(text: str, what: str) -> int:
    match = _DIGITS.match(text)
    if not match:
        raise QuotaError(f"bad {what} in quota: {text!r}")
    return int(match.group(1))


def parse_quota(text: str) -> Quota:
    """The Quota of a pw_shell string."""
    size_part, sep, count_part = text.partition(",")
    count = _number(count_part, "count") if sep else 0
    if size_part.startswith(NOQUOTA):
        return Quota(0, count)
    size = _number(size_part, "size")
    for ch in size_part.lower():
        if ch in _MULT:
            size *= _MULT[ch]
            break
    if size < 0 or count < 0:
        raise QuotaError(f"negative quota: {text!r}")
    return Quota(size, count)


def format_quota(quota: Quota) -> str:
    """The pw_shell string for *quota* (bytes, no suffix; count only when set)."""
    head = NOQUOTA if quota.size == 0 else str(quota.size)
    return f"{head},{quota.count}" if quota.count else head
