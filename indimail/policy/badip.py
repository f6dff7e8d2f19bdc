"""The ``badip`` plugin: refuse clients whose IP is listed, at connect.

Enabled by ``BADIPCHECK`` (the control file ``badip``) or ``BADIP`` (the
file it names; empty means ``badip``), as upstream ``open_control_files()``.
The list has text, cdb and sql forms (regular expressions with QREGEX).
A listed client gets upstream's greeting-line refusal, ``421 <greeting>
sorry, your IP (a.b.c.d) is temporarily denied (#4.7.1)``, and the
connection is closed (upstream keeps it open and answers every command 421).
"""

from __future__ import annotations

from indimail.plugins.api import ORDER_ACCESS, disconnect
from indimail.policy.badlists import address_match, prefix
from indimail.policy.lists import AddressList

DENIED = "sorry, your IP ({ip}) is temporarily denied (#4.7.1)"


def enabled(env) -> bool:
    return "BADIPCHECK" in env or "BADIP" in env


class BadIP:
    name = "badip"
    order = ORDER_ACCESS

    def __init__(self, setup):
        self.family = AddressList(setup.control, "badip", "BADIP", setup=setup,
                                  domain_keys=False)

    @classmethod
    def factory(cls, setup):
        return cls(setup)

    async def hook_connect(self, ctx):
        if not enabled(ctx.env):
            return None
        found, failure = await address_match(ctx, self.family, ctx.remote_ip)
        if failure:
            return failure
        if found:
            ctx.log.info("qmail-smtpd: pid {pid} {ip} BAD IP client", **prefix(ctx))
            greeting = getattr(ctx.settings, "greeting", "")
            return disconnect(f"{greeting} {DENIED.format(ip=ctx.remote_ip)}".lstrip(), 421)
        return None


PLUGINS = {"badip": BadIP.factory}
