"""vdominfo's output, line for line as upstream ``vdominfo.c`` prints it.

Without options (or with ``-a``) every field of a domain is shown under a
``---- Domain <name> ---...`` banner; ``-n -u -g -d -b -t -l -p`` show only
those fields, in upstream's order, under a shorter banner.  The cluster
lines (host ID, IP address, smtp_port rows) appear only when
``control/host.cntrl`` exists, as upstream's do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .domainopts import BASE_PATH_FILE, first_line, local_hostid

FIELDS = {"-n": "name", "-u": "uid", "-g": "gid", "-d": "dir", "-b": "base",
          "-t": "users", "-l": "aliases", "-p": "ports"}


def base_dir(directory: Path) -> str:
    """Blocking: the domain's ``.base_path``, else the directory its own
    directory sits in (users live in ``<base>/<domain>/``)."""
    return first_line(directory / BASE_PATH_FILE) or str(directory.parent)


def host_details(home, env: Mapping[str, str]) -> tuple[str, str] | None:
    """Blocking: (host ID, IP address) of this node when ``host.cntrl`` exists."""
    from indimail.cli.dbinfo import _local_ip

    control = Path(home.control)
    if not (control / "host.cntrl").exists():
        return None
    env = {**env, "CONTROLDIR": env.get("CONTROLDIR") or str(control)}
    return local_hostid(env) or "???", _local_ip(control)


async def smtp_ports(store, domain: str) -> list[tuple[str, str, int]]:
    """The smtp_port rows of *domain* (upstream ``vsmtp_select``)."""
    rows = await store._query("SELECT src_host, host, port FROM smtp_port WHERE domain = %s "
                              "ORDER BY src_host, host", domain)
    return [(src, host, int(port)) for src, host, port in rows]


def _port_lines(info) -> list[str]:
    return [f"{'          :' if n else 'Ports     :'}{src:<18} {host:>20}@{info.domain:<35}{port}"
            for n, (src, host, port) in enumerate(info.ports)]


def _host_lines(info) -> list[str]:
    return [f"   host ID: {info.host[0]}", f"   IP Addr: {info.host[1]}"] if info.host else []


def render_vdominfo(info, fields: frozenset[str] | None = None) -> str:
    """The text vdominfo prints for *info* (a DomainInfo); *fields* None: all."""
    real = info.domain == info.real_domain
    name = [f"    domain: {info.domain}" if real else
            f"    domain: {info.domain} aliased to {info.real_domain}"]
    uid, gid = [f"       uid: {info.uid}"], [f"       gid: {info.gid}"]
    directory = [f"Domain Dir: {info.directory}"]
    base = [f"  Base Dir: {info.base_dir}"] if info.base_dir else []
    users = [f"     Users: {info.users}",
             f"   vlimits: {'enabled' if info.limits else 'disabled'}"]
    aliases = ["AliasDomains:"] + list(info.aliases) if info.aliases else []
    if fields is None:
        pad = " " * max(25 - len(info.domain), 0)
        lines = [f"---- Domain {info.domain}{pad} -------------------------------"]
        lines += name + uid + gid + _host_lines(info) + _port_lines(info) + directory
        if real:
            lines += base + users + aliases
        return "\n".join(lines) + "\n"
    lines = [f"---- Domain {info.domain} ----------------"]
    chosen = [("name", name + _host_lines(info)), ("uid", uid), ("gid", gid),
              ("ports", _port_lines(info)), ("dir", directory)]
    if real:
        chosen += [("base", base), ("users", users), ("aliases", aliases)]
    for key, text in chosen:
        if key in fields:
            lines += text
    return "\n".join(lines) + "\n"


__all__ = ["FIELDS", "base_dir", "host_details", "render_vdominfo", "smtp_ports"]
