"""The ``Received:`` line the queue puts on top of every message.

Reference §1 fixes the form (it wins over later upstream variants):
``Received: (indimail-mta <pid> invoked by uid <uid>); <RFC 5322 date>``,
``... invoked from network <ip> ...``, ``... invoked for bounce ...``,
``... invoked by alias ...``.
"""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import format_datetime

from indimail.persecond import PerSecond

INVOKED = ("uid", "network", "bounce", "alias")


def _format(now: float) -> str:
    return format_datetime(datetime.fromtimestamp(now).astimezone())


_dates = PerSecond(_format)


def rfc5322_date(now: float) -> str:
    """*now* as ``Fri, 21 Oct 2022 23:04:36 +0530`` in local time.

    Every message needs two or three of these (greeting, SMTP Received line,
    queue Received line): the text is made once per second."""
    return _dates(now)


def received_line(pid: int, uid: int, invoked: str = "uid",
                  remote_ip: str | None = None, now: float | None = None) -> bytes:
    """The queue's Received line, ending in ``\\n``.

    ``uid`` with a *remote_ip* is upstream's "invoked from network <ip>, by
    uid <uid>" (a queue client run under tcpserver)."""
    if invoked not in INVOKED:
        raise ValueError(f"invoked must be one of {INVOKED}, not {invoked!r}")
    if invoked == "alias":
        how = "invoked by alias"
    elif invoked == "bounce":
        how = "invoked for bounce"
    elif invoked == "network":
        how = f"invoked from network {remote_ip or '?.?.?.?'}"
    elif remote_ip:
        how = f"invoked from network {remote_ip}, by uid {uid}"
    else:
        how = f"invoked by uid {uid}"
    when = rfc5322_date(time.time() if now is None else now)
    return f"Received: (indimail-mta {pid} {how}); {when}\n".encode("ascii", "replace")
