"""Where to connect for a domain: MX records in preference order, else the
domain's address (qmail's ``dns_mxip``), or a relay's addresses
(``dns_ip``).  ``1.2.3.4`` and ``[1.2.3.4]`` are literal addresses.

Lookups go through an injected ``twisted.names`` resolver.  A name that
is an alias (CNAME) is followed to its target, at most ``MAX_CNAME`` links;
:func:`canonical` gives the canonical name qmail-remote writes into the
recipient addresses (``DISABLE_CNAME_LOOKUP`` turns that off).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from twisted.names import dns, error as dns_error

MAX_CNAME = 10


class DNSHardError(Exception):
    """The name does not exist (NXDOMAIN): a permanent failure."""


class DNSSoftError(Exception):
    """The lookup failed for now (timeout, server failure)."""


@dataclass(frozen=True)
class MXAddress:
    """One address to try: its preference, the MX name, the IP address."""

    preference: int
    name: str
    address: str

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version


def literal(host: str) -> str | None:
    """The IP address when *host* is ``1.2.3.4``, ``[1.2.3.4]`` or ``[IPv6:..]``."""
    text = host
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text.lower().startswith("ipv6:"):
            text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


async def _lookup(call, name: str):
    try:
        return await call(name)
    except (dns_error.DNSNameError, dns_error.AuthoritativeDomainError):
        raise DNSHardError(name) from None
    except Exception as exc:
        if type(exc) is dns_error.DomainError:  # a resolver chain found no such name
            raise DNSHardError(name) from None
        raise DNSSoftError(f"{name}: {exc!r}") from None


def _ips(records) -> list[tuple[str, str]]:
    """(owner name lower-cased, address) of the A and AAAA records."""
    out = []
    for rr in records:
        if rr.type == dns.A:
            out.append((str(rr.name).lower(), rr.payload.dottedQuad()))
        elif rr.type == dns.AAAA:
            out.append((str(rr.name).lower(), str(ipaddress.ip_address(rr.payload.address))))
    return out


def _cname_of(records, name: str) -> str | None:
    """The target of *name*'s CNAME among *records*, if any."""
    for rr in records:
        if rr.type == dns.CNAME and str(rr.name).lower().rstrip(".") == name.lower().rstrip("."):
            return str(rr.payload.name)
    return None


def _follow(records, name: str) -> str:
    """The end of the CNAME chain from *name* that *records* show."""
    seen = 0
    while seen < MAX_CNAME:
        target = _cname_of(records, name)
        if target is None:
            return name
        name, seen = target, seen + 1
    return name


async def canonical(resolver, name: str) -> str:
    """qmail's ``dns_cname``: follow CNAME records from *name*; the name
    itself when it is no alias, does not exist or the chain loops.
    Raises DNSSoftError when the lookup fails for now."""
    if literal(name) is not None or not hasattr(resolver, "lookupCanonicalName"):
        return name
    current = name
    for _ in range(MAX_CNAME):
        try:
            answers, _auth, _add = await _lookup(resolver.lookupCanonicalName, current)
        except DNSHardError:
            return current
        target = _cname_of(answers, current)
        if target is None:
            return current
        current = target
    return name   # an alias loop: not our problem, keep the name


async def addresses(resolver, name: str, preference: int = 0) -> list[MXAddress]:
    """The A then AAAA records of *name* (or the literal), as MXAddresses.
    One family failing is ignored when the other gives addresses."""
    ip = literal(name)
    if ip is not None:
        return [MXAddress(preference, name, ip)]
    calls = [(resolver.lookupAddress, 4)]
    if hasattr(resolver, "lookupIPV6Address"):
        calls.append((resolver.lookupIPV6Address, 6))
    found: list[MXAddress] = []
    errors: list[Exception] = []
    for call, want in calls:
        try:
            answers, _auth, _add = await _lookup(call, name)
        except (DNSHardError, DNSSoftError) as exc:
            errors.append(exc)
            continue
        # an alias: the records of the chain's end (the server sends them along)
        end = _follow(answers, name).lower().rstrip(".")
        for owner, address in _ips(answers):
            if (owner.rstrip(".") in (name.lower().rstrip("."), end)
                    and ipaddress.ip_address(address).version == want
                    and all(f.address != address for f in found)):
                found.append(MXAddress(preference, name, address))
    if found or not errors:
        return found
    soft = [e for e in errors if isinstance(e, DNSSoftError)]
    raise (soft or errors)[0]


async def resolve_relay(resolver, host: str) -> list[MXAddress]:
    """``dns_ip``: the relay's addresses, preference 0."""
    return await addresses(resolver, host, 0)


async def resolve_mx(resolver, host: str, rng: random.Random | None = None,
                     _depth: int = 0) -> list[MXAddress]:
    """``dns_mxip``: MX hosts' addresses by preference (ties shuffled),
    each host's IPv4 then IPv6 addresses; with no MX record, the host's own
    addresses.  Raises DNSHardError for a
    name that does not exist, DNSSoftError when nothing could be learnt."""
    ip = literal(host)
    if ip is not None:
        return [MXAddress(0, host, ip)]
    answers, _auth, additional = await _lookup(resolver.lookupMailExchange, host)
    mxs = [(rr.payload.preference, str(rr.payload.name)) for rr in answers if rr.type == dns.MX]
    if not mxs:
        alias = _cname_of(answers, host)
        if alias is not None and _depth < MAX_CNAME:
            return await resolve_mx(resolver, alias, rng, _depth + 1)
        return await addresses(resolver, host, 0)
    glue: dict[str, list[str]] = {}
    for owner, address in _ips(additional):
        glue.setdefault(owner, []).append(address)
    rng = rng or random.Random()
    rng.shuffle(mxs)
    mxs.sort(key=lambda item: item[0])
    out: list[MXAddress] = []
    soft = False
    for preference, name in mxs:
        if name.lower() in glue:
            ips = sorted(glue[name.lower()], key=lambda a: ":" in a)  # IPv4 first
            out += [MXAddress(preference, name, a) for a in ips]
            continue
        try:
            out += await addresses(resolver, name, preference)
        except DNSSoftError:
            soft = True
        except DNSHardError:
            continue
    if not out and soft:
        raise DNSSoftError(host)
    return out
