"""qmail-send's retry schedule: pure arithmetic on the message's birth time.

Next try = birth + (n + chanskip)², n = ⌊√(now − birth)⌋ (reference §2,
``nextretry()``).  Nothing but the birth time (the ``info`` file's mtime)
and the clock is needed, so the schedule survives a restart unchanged.
"""

from __future__ import annotations

from math import isqrt

LOCAL = "local"
REMOTE = "remote"
CHANNELS = (LOCAL, REMOTE)
CHANSKIP = {LOCAL: 10, REMOTE: 20}

DEFAULT_LIFETIME = 604800
TOO_LONG = "I'm not going to try again; this message has been in the queue too long.\n"


def next_retry(birth: float, now: float, channel: str) -> int:
    """When the next attempt of *channel* after one made at *now* is due."""
    birth = int(birth)
    elapsed = int(now) - birth
    n = 0 if elapsed < 0 else isqrt(elapsed)
    n += CHANSKIP[channel]
    return birth + n * n


def is_dying(birth: float, now: float, lifetime: int) -> bool:
    """True once the message has outlived ``queuelifetime``: a deferral then
    becomes a permanent failure."""
    return int(now) > int(birth) + lifetime


def lifetime_for(sender: str, lifetime: int, bouncelifetime: int | None) -> int:
    """``bouncelifetime`` (never above ``queuelifetime``) applies to bounces."""
    if sender == "" and bouncelifetime is not None:
        return min(bouncelifetime, lifetime)
    return lifetime


def dying_report(report: str) -> str:
    """The failure text qmail-send makes of a deferral past the lifetime."""
    return report_lines(report) + TOO_LONG


def report_lines(report: str) -> str:
    """A report as qmail's spawners send it: newline-terminated."""
    if report and not report.endswith("\n"):
        return report + "\n"
    return report
