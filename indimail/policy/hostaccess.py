"""The ``hostaccess`` plugin: which sender domains may come from which IPs.

``control/hostaccess`` (another file: ``HOSTACCESS``) holds
``domain:ip`` lines, upstream's ``tablematch.c``::

    *:202.133.22.1          any domain from 202.133.22.1
    yahoo.com:202.144.77.5  yahoo.com from 202.144.77.5
    abc.com:202.10-33.54.5  abc.com from 202.10.54.5 … 202.33.54.5
    indimail.org:*          indimail.org from anywhere
    <>:10.1.1.*             the null sender from 10.1.1.x

The IP side is ``*``, an address, or four fields each ``*``, a number with
``?`` wildcards, or a range ``a-b`` (``a-`` means up to 255).  At MAIL the
sender's domain and the client's IP are tried against every line; a line
matching both lets the mail in.  Otherwise the mail is refused with
``553 sorry, your host has been denied (#5.7.1)`` when

* an IP listed for other domains sent it, unless ``DOMAIN_MASQUERADE`` is set;
* with ``PARANOID`` set, its domain is listed but not for this IP.

Everything else (no line about this domain or this IP) is accepted, as is
every sender when the file is absent or empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.internet import defer

from indimail.config.control import strip_lines
from indimail.fastlog import Logger
from indimail.plugins.api import ORDER_ACCESS, deny
from indimail.policy.lists import CHECK_INTERVAL, ControlWatch, plugin_reactor

from .accesslist import control_name, session_pid

log = Logger()

DENIED = "sorry, your host has been denied (#5.7.1)"
ANY_IP = ("*", "*.*.*.*")
_INET_ADDR = re.compile(r"\d+(\.\d+){0,3}")


@dataclass(frozen=True)
class HostRule:
    domain: str        # lower-cased; "*" any domain, "<>" the null sender
    ip: str


def parse_hostaccess(lines: list[str]) -> list[HostRule]:
    """``domain:ip`` lines; a line without ``:`` is skipped."""
    rules = []
    for line in lines:
        domain, colon, ip = line.strip().partition(":")
        if colon:
            rules.append(HostRule(domain.strip().lower(), ip.strip()))
    return rules


def _scan_int(text: str) -> int:
    m = re.match(r"[+-]?\d+", text)
    return int(m.group(0)) if m else 0


def match_ip(ip: str, token: str) -> bool:
    """upstream ``matchinet()`` without its DNS lookup: exact address, or
    field by field with ``*``, ``?`` and ``a-b``."""
    if token == ip:
        return True
    if _INET_ADDR.fullmatch(token):     # a plain address matches only itself
        return False
    tfields, ifields = token.split("."), ip.split(".")
    for n in range(4):
        pattern = tfields[n] if n < len(tfields) else ""
        value = ifields[n] if n < len(ifields) else ""
        if pattern == "*":
            continue
        chars = []
        for k, ch in enumerate(pattern):
            if ch == "?":
                if k >= len(value):
                    break        # upstream copies the value's terminating NUL
                ch = value[k]
            chars.append(ch)
        pattern = "".join(chars)
        if pattern == value:
            continue
        low, dash, high = pattern.partition("-")
        if dash and value[:1].isdigit():
            top = _scan_int(high) if high else 256
            if _scan_int(low) <= _scan_int(value) <= top:
                continue
        return False
    return True


def host_allowed(rules: list[HostRule], ip: str, sender: str, *, paranoid: bool = False,
                 masquerade: bool = False) -> bool:
    """upstream ``tablematch("hostaccess", ip, sender)``."""
    at = sender.find("@")
    domain = sender[at + 1:].lower() if at >= 0 else None
    listed_domain = listed_ip = False
    for rule in rules:
        if rule.domain == "<>":      # upstream: a sender without a domain
            dmatch = domain is None
        else:
            dmatch = bool(domain) and rule.domain in ("*", domain)
        if dmatch and rule.domain != "*":
            listed_domain = True
        imatch = rule.ip in ANY_IP or match_ip(ip, rule.ip)
        if imatch and rule.ip not in ANY_IP:
            listed_ip = True
        if dmatch and imatch:
            return True
    if listed_domain and paranoid:
        return False
    if listed_ip and not masquerade:
        return False
    return True


def _read_rules(data: bytes) -> list[HostRule]:
    return parse_hostaccess(strip_lines(data))


class HostAccess:
    """The mail hook applying ``hostaccess``."""

    name = "hostaccess"
    order = ORDER_ACCESS

    def __init__(self, control, reactor, check_interval: float = CHECK_INTERVAL):
        self.files = ControlWatch(control, _read_rules, reactor, check_interval)

    @classmethod
    def from_setup(cls, setup) -> "HostAccess":
        return cls(setup.control, plugin_reactor(setup))

    def hook_mail(self, ctx, sender: str):
        return defer.ensureDeferred(self._check(ctx, sender))

    async def _check(self, ctx, sender: str):
        env = ctx.env
        rules = await self.files.get(control_name(env, "HOSTACCESS", "hostaccess"))
        if not rules:
            return None
        if host_allowed(rules, ctx.remote_ip, sender, paranoid=env.flag("PARANOID"),
                        masquerade=env.flag("DOMAIN_MASQUERADE")):
            return None
        log.info("qmail-smtpd: pid {pid} {ip} Invalid SENDER host IP address: "
                 "MAIL from <{sender}>", pid=session_pid(ctx), ip=ctx.remote_ip, sender=sender)
        return deny(DENIED, 553)


PLUGINS = {"hostaccess": HostAccess.from_setup}
