"""Cluster routing: which mail store holds a user (upstream ``findhost``).

In a cluster the same domain lives on several mail stores and each user on
one of them.  ``hostcntrl`` maps a user to a host id, ``host_table`` the id to
the store's IP address and ``smtp_port`` gives the port this node uses to
reach it.  vdelivermail relays mail for a user who is not in the local
database to ``domain:ip:port`` (the "IPaddress" delivery of the seed), unless
the host id is this node's own (``HOSTID``, else ``control/hostid``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping


def local_hostid(env: Mapping[str, str]) -> str | None:
    """This node's host id: ``HOSTID``, else the first line of
    ``<CONTROLDIR or $INDIMAIL_HOME/control>/hostid`` (blocking read)."""
    if env.get("HOSTID"):
        return env["HOSTID"].strip()
    control = env.get("CONTROLDIR") or (
        str(Path(env["INDIMAIL_HOME"]) / "control") if env.get("INDIMAIL_HOME") else None)
    if not control:
        return None
    try:
        text = (Path(control) / "hostid").read_text(errors="replace")
    except OSError:
        return None
    line = text.strip().splitlines()
    return line[0].strip() if line else None


async def find_route(store, user: str, domain: str, hostid: str | None) -> str | None:
    """``domain:ip:port`` of the mail store holding *user@domain* when it is
    another node; None when hostcntrl does not know the user, names this
    node, or its host has no host_table address."""
    host = await store.mailstore(user, domain)
    if host is None or (hostid is not None and host == hostid):
        return None
    ip = await store.host_ip(host)
    if not ip:
        return None
    port = await store.smtp_port(ip, hostid or "localhost", domain)
    return f"{domain}:{ip}:{port}"


__all__ = ["local_hostid", "find_route"]
