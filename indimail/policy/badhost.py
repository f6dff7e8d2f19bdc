"""The ``badhost`` plugin: refuse clients by remote host name, at connect.

Enabled by ``BADHOSTCHECK`` (the control file ``badhost``) or ``BADHOST``
(the file it names).  Each line is a case-insensitive regular expression
searched in ``TCPREMOTEHOST`` ("unknown" when not known); a line
``!regex`` refuses every host it does *not* match; the first deciding line
wins (upstream ``badhostcheck()``).  The refusal replaces the greeting:
``553 <greeting> sorry, your host (name) has been denied (#5.7.1)``.
"""

from __future__ import annotations

from indimail.config.control import strip_lines
from indimail.plugins.api import ORDER_ACCESS, deny
from indimail.policy.badlists import prefix
from indimail.policy.lists import ControlWatch, plugin_reactor, regex_search

DENIED = "sorry, your host ({host}) has been denied (#5.7.1)"


def badhost_match(lines, host: str) -> bool:
    """upstream ``badhostcheck()`` over *lines*."""
    for line in lines:
        line = line.strip()
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        found = regex_search(line, host)
        if found != negate:
            return True
    return False


class BadHost:
    name = "badhost"
    order = ORDER_ACCESS + 10

    def __init__(self, setup):
        self.control = setup.control
        self.reactor = plugin_reactor(setup)
        self._files = ControlWatch(setup.control, strip_lines, self.reactor)

    @classmethod
    def factory(cls, setup):
        return cls(setup)

    async def lines(self, name: str) -> list[str]:
        return list(await self._files.get(name) or [])

    async def hook_connect(self, ctx):
        env = ctx.env
        if "BADHOSTCHECK" not in env and "BADHOST" not in env:
            return None
        name = (env.get("BADHOST") or "").strip() or "badhost"
        host = env.get("TCPREMOTEHOST") or "unknown"
        if badhost_match(await self.lines(name), host):
            ctx.log.info("qmail-smtpd: pid {pid} {ip} BAD HOST {host}", host=host,
                         **prefix(ctx))
            greeting = getattr(ctx.settings, "greeting", "")
            return deny(f"{greeting} {DENIED.format(host=host)}".lstrip(), 553)
        return None


PLUGINS = {"badhost": BadHost.factory}
