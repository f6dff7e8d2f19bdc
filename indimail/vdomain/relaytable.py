"""POP-before-SMTP: IndiMail's ``relay`` table.

A POP3/IMAP login (``vchkpass`` under Dovecot, later the proxies) records
``(email, ipaddr, timestamp)``; the SMTP service, when ``CHECKRELAY`` is
set, lets an IP relay while it has a row younger than
``RELAY_CLEAR_MINUTES`` (default 60), and sets ``RELAYCLIENT`` and
``AUTHENTICATED`` as qmail-smtpd's ``pop_bef_smtp`` does; ``clearopensmtp``
deletes older rows.  *now* is always an argument: callers inject their clock.

``ipaddr`` is ``char(18)`` in IndiMail's schema: an IPv4-mapped IPv6
address is stored as plain IPv4, and a longer IPv6 address is not
recorded at all (cutting it would let another address relay).
"""

from __future__ import annotations

import ipaddress
from typing import Mapping

from indimail.fastlog import Logger
from .store import RELAY_CLEAR_MINUTES, deferred

log = Logger()

IPADDR_WIDTH = 18


def relay_clear_minutes(env: Mapping[str, str] | None) -> int:
    """``RELAY_CLEAR_MINUTES`` from *env*, else 60."""
    try:
        return int((env or {}).get("RELAY_CLEAR_MINUTES", "").strip())
    except ValueError:
        return RELAY_CLEAR_MINUTES


def relay_ip(ip: str) -> str | None:
    """The form of *ip* kept in ``relay.ipaddr``; None when it does not fit."""
    text = (ip or "").strip()
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return text if 0 < len(text) <= IPADDR_WIDTH else None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    text = str(parsed)
    return text if len(text) <= IPADDR_WIDTH else None


@deferred
async def open_relay(store, email: str, ip: str, now: float) -> bool:
    """Record that *email* logged in from *ip* at *now*; False when *ip* cannot be kept."""
    key = relay_ip(ip)
    if key is None:
        log.info("relay: {ip} does not fit the relay table; not recorded", ip=ip)
        return False
    await store.add_relay(email.lower()[:96], key, now)
    return True


@deferred
async def relay_allowed(store, ip: str, now: float,
                        env: Mapping[str, str] | None = None) -> bool:
    """Whether *ip* logged in by POP3/IMAP within ``RELAY_CLEAR_MINUTES`` of *now*."""
    key = relay_ip(ip)
    if key is None:
        return False
    return bool(await store.relay_allowed(key, now, relay_clear_minutes(env)))


@deferred
async def check_relay(store, env: Mapping[str, str], ip: str, now: float) -> dict[str, str]:
    """qmail-smtpd's ``pop_bef_smtp``: the variables to set for this session.

    Nothing without ``CHECKRELAY``; ``RELAYCLIENT`` (empty) and
    ``AUTHENTICATED=1`` when the relay table lets *ip* relay, else
    ``AUTHENTICATED=0``.  Database errors propagate (the caller answers
    451 ``Sorry, I got a temporary database error (#4.3.2)``)."""
    if "CHECKRELAY" not in env:
        return {}
    if await relay_allowed(store, ip, now, env):
        return {"RELAYCLIENT": "", "AUTHENTICATED": "1"}
    return {"AUTHENTICATED": "0"}


@deferred
async def clear_open_smtp(store, now: float, env: Mapping[str, str] | None = None) -> int:
    """Delete rows older than ``RELAY_CLEAR_MINUTES`` (clearopensmtp); how many went."""
    return int(await store.clear_relay(now, relay_clear_minutes(env)))
