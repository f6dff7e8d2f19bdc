"""Relaying granted by control files: relayclients, relaydomains, relaymailfrom.

The seed's "Relay Mechanism in IndiMail".  ``relayclients`` (IP prefixes)
and ``relaydomains`` (remote host names) are ``key:suffix`` lines read at
connect when ``RELAYCLIENT`` is not already set; a match sets
``RELAYCLIENT`` to the suffix for the session (upstream sets its
``relayclient`` variable, which means exactly that: the suffix is appended
to every recipient and the session counts as a relay client everywhere).
``relaymailfrom`` lists envelope senders (``user@host`` or ``@host``, text,
cdb or sql) whose transaction may relay.  Every grant also sets the
``relay`` note rcpthosts looks at.
"""

from __future__ import annotations

from indimail.config.control import strip_lines
from indimail.plugins.api import ORDER_ACCESS, ORDER_SENDER
from indimail.policy.badlists import address_match
from indimail.policy.lists import AddressList, ControlWatch, plugin_reactor
from indimail.policy.rcpthosts import domain_suffixes


def parse_relay_map(data: bytes) -> dict[str, str]:
    """``key:suffix`` lines → {lower-cased key: suffix}; a line without a
    colon has an empty suffix."""
    found: dict[str, str] = {}
    for line in strip_lines(data):
        key, _, suffix = line.strip().partition(":")
        if key:
            found.setdefault(key.lower(), suffix)
    return found


def ip_prefixes(ip: str) -> list[str]:
    """``1.2.3.4`` → ``1.2.3.4``, ``1.2.3.``, ``1.2.``, ``1.``: the keys
    relayclients is searched for, longest first (upstream cuts after dots;
    IPv6 addresses are cut after colons too)."""
    keys = [ip]
    for i in range(len(ip) - 1, 0, -1):
        if ip[i - 1] in ".:":
            keys.append(ip[:i])
    return keys


def grant(ctx, suffix: str) -> None:
    """Make the session a relay client with *suffix*, as RELAYCLIENT would."""
    ctx.session.env = ctx.session.env.set(RELAYCLIENT=suffix)
    ctx.session.notes["relay"] = True


class _MapPlugin:
    order = ORDER_ACCESS + 50

    def __init__(self, setup):
        self.control = setup.control
        self.reactor = plugin_reactor(setup)
        self._files = ControlWatch(setup.control, parse_relay_map, self.reactor)

    @classmethod
    def factory(cls, setup):
        return cls(setup)

    async def table(self, name: str) -> dict[str, str] | None:
        return await self._files.get(name)


class RelayClients(_MapPlugin):
    """``relayclients`` (or the file named by ``RELAYCLIENTS``): remote IP
    prefixes allowed to relay."""

    name = "relayclients"

    async def hook_connect(self, ctx):
        if ctx.env.get("RELAYCLIENT") is not None:
            return None
        table = await self.table((ctx.env.get("RELAYCLIENTS") or "").strip() or "relayclients")
        if not table:
            return None
        for key in ip_prefixes(ctx.remote_ip):
            if key in table:
                grant(ctx, table[key])
                break
        return None


class RelayDomains(_MapPlugin):
    """``relaydomains``: remote host names (``TCPREMOTEHOST``; ``host`` or
    ``.domain`` lines) allowed to relay."""

    name = "relaydomains"

    async def hook_connect(self, ctx):
        if ctx.env.get("RELAYCLIENT") is not None:
            return None
        host = ctx.session.remote_host
        if not host:
            return None
        table = await self.table("relaydomains")
        if not table:
            return None
        for key in domain_suffixes(host.lower()):
            if key in table:
                grant(ctx, table[key])
                break
        return None


class RelayMailFrom:
    """``relaymailfrom``: envelope senders whose transaction may relay
    without authentication (not consulted for relay clients)."""

    name = "relaymailfrom"
    order = ORDER_SENDER + 20

    def __init__(self, setup):
        self.family = AddressList(setup.control, "relaymailfrom", setup=setup)

    @classmethod
    def factory(cls, setup):
        return cls(setup)

    async def hook_mail(self, ctx, sender: str):
        if ctx.relayclient or ctx.transaction is None:
            return None
        found, failure = await address_match(ctx, self.family, sender)
        if failure:
            return failure
        if found:
            ctx.session.transaction_env(ctx.env.set(RELAYCLIENT=""))
            ctx.transaction.notes["relay"] = True
        return None


PLUGINS = {
    "relayclients": RelayClients.factory,
    "relaydomains": RelayDomains.factory,
    "relaymailfrom": RelayMailFrom.factory,
}
