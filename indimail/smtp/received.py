"""The ``Received:`` header qmail-smtpd puts on every message it accepts.

Upstream form (indimail-mta ``received.c``, ``smtpd.c``; the seed shows it
as ``Received: indimail-mta smtpd 176367 from localhost (HELO
argos.indimail.org) (::ffff:127.0.0.1)`` / ``  by argos.indimail.org with
ESMTPS; Sat, 7 Jan 2023 08:14:56 +0530``)::

    Received: indimail-mta smtpd <pid>[ from <remotehost>][ (HELO <helo>)] ([<info>@]<ip>)
      by <localhost> with <protocol>; <date>

``from <remotehost>`` only when the host name is known; ``(HELO ..)`` only
when the HELO argument differs from the host name; ``HIDE_HOST`` leaves out
host, HELO, address and local host.  Characters outside upstream's safe set
become ``?``.  (Upstream's ``received.c`` prints the address only together
with TCPREMOTEINFO; its output in the documentation always shows it, and
so do we.)
"""

from __future__ import annotations

import re

from indimail.queue.received import rfc5322_date

_UNSAFE = re.compile(r"[^A-Za-z0-9.@%+/=:\-_\[\] ]")


def safe(text: str) -> str:
    """Upstream ``safeput()``: anything outside its safe set becomes ``?``."""
    return _UNSAFE.sub("?", text)


def smtpd_received(*, pid: int, local: str, remote_ip: str, remote_host: str | None,
                   remote_info: str | None, helo: str | None, protocol: str,
                   now: float, hide: bool = False, program: str = "smtpd") -> bytes:
    """The header, two lines, ending in LF."""
    parts = [f"Received: indimail-mta {program} {pid}"]
    if not hide:
        if remote_host:
            parts.append(f" from {safe(remote_host)}")
        if helo and helo.lower() != (remote_host or "unknown").lower():
            parts.append(f" (HELO {safe(helo)})")
        who = f"{safe(remote_info)}@" if remote_info else ""
        parts.append(f" ({who}{safe(remote_ip)})")
    parts.append("\n")
    if not hide:
        parts.append(f"  by {safe(local)}")
    parts.append(f" with {protocol}; {rfc5322_date(now)}\n")
    return "".join(parts).encode("utf-8", "surrogateescape")
