"""Relay control: which recipients this server takes mail for.

A recipient is accepted when the session has ``RELAYCLIENT`` (its value is
appended to the address, qmail style), or when its domain is in
``rcpthosts`` (an exact ``domain`` line, or a ``.domain`` line matching any
sub-domain) or in ``morercpthosts.cdb``.  An address without ``@`` is
accepted (qmail-send completes it with ``envnoathost``).

Deliberate difference: upstream's ``rcpthosts.c`` accepts every recipient
when ``rcpthosts`` does not exist (an open relay).  Here a missing
``rcpthosts`` refuses every relay except ``RELAYCLIENT`` — closed relay by
default; ``indimail init`` writes the file with the home's domains.
"""

from __future__ import annotations

from typing import Mapping

from twisted.logger import Logger

from indimail.config.control import ControlFiles

from . import reply
from .address import domain_of
from .reply import SMTPError

log = Logger()


def domain_suffixes(domain: str) -> list[str]:
    """``a.b.c`` → ``a.b.c``, ``.b.c``, ``.c``: the keys rcpthosts is searched for."""
    keys = [domain]
    for i, ch in enumerate(domain):
        if ch == "." and i:
            keys.append(domain[i:])
    return keys


class RelayPolicy:
    """rcpthosts/morercpthosts/RELAYCLIENT over one control directory."""

    def __init__(self, control: ControlFiles):
        self.control = control

    def in_rcpthosts(self, address: str) -> bool:
        """Whether *address*'s domain is one we accept mail for."""
        domain = domain_of(address)
        if domain is None:
            return True
        keys = domain_suffixes(domain)
        found = False
        if self.control.exists("rcpthosts"):
            listed = {line.strip().lower() for line in self.control.lines("rcpthosts")}
            found = any(k in listed for k in keys)
        # rcpthosts.cdb (written by ``indimail init`` beside the text) and
        # upstream's morercpthosts.cdb
        for name in ("rcpthosts", "morercpthosts"):
            if found:
                break
            table = self.control.cdb(name)
            if table is not None:
                found = any(table.get(k.encode("utf-8", "surrogateescape")) is not None
                            for k in keys)
        return found

    def check_rcpt(self, env: Mapping[str, str], sender: str, address: str) -> str:
        """The address to queue for *address*, or :class:`SMTPError` (553)."""
        relayclient = env.get("RELAYCLIENT")
        if relayclient is not None:
            return address + relayclient
        if self.in_rcpthosts(address):
            return address
        log.info("Invalid RELAY client: MAIL from <{sender}> RCPT <{rcpt}>",
                 sender=sender, rcpt=address)
        raise SMTPError(553, reply.NO_RELAY)
