"""The ``rcpthosts`` plugin: which recipients this server takes mail for.

It runs last among the rcpt hooks (``ORDER_RELAY``).  A recipient is
accepted when the session has ``RELAYCLIENT`` (its value is appended to the
address, qmail style), when an earlier plugin granted relaying for the
connection or the transaction (``notes["relay"]``: relayclients,
relaymailfrom, ...), or when its domain is in
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

from indimail.config.control import ControlFiles
from indimail.fastlog import Logger
from indimail.plugins.api import ORDER_RELAY, accept, deny
from indimail.smtp import reply
from indimail.smtp.address import domain_of
from indimail.smtp.reply import SMTPError
from indimail.smtp.tlsclients import relay_refusal

log = Logger()


def domain_suffixes(domain: str) -> list[str]:
    """``a.b.c`` → ``a.b.c``, ``.b.c``, ``.c``: the keys rcpthosts is searched for."""
    keys = [domain]
    dot = domain.find(".", 1)      # a leading dot starts no suffix of its own
    while dot > 0:
        keys.append(domain[dot:])
        dot = domain.find(".", dot + 1)
    return keys


# the address as given (the protocol queues the RCPT's own): one Result for all
ACCEPTED = accept()


class RelayPolicy:
    """rcpthosts/morercpthosts/RELAYCLIENT over one control directory."""

    name = "rcpthosts"
    order = ORDER_RELAY

    def __init__(self, control: ControlFiles):
        self.control = control

    @classmethod
    def from_setup(cls, setup) -> "RelayPolicy":
        return cls(setup.control)

    def hook_rcpt(self, ctx, address: str):
        """Accept local domains and relay clients; refuse the rest (553)."""
        relayclient = ctx.env.get("RELAYCLIENT")
        if relayclient is not None:
            return accept(address=address + relayclient)
        txn = ctx.transaction
        if ctx.session.notes.get("relay") or (txn is not None and txn.notes.get("relay")):
            return ACCEPTED
        if self.in_rcpthosts(address):
            return ACCEPTED
        log.info("Invalid RELAY client: MAIL from <{sender}> RCPT <{rcpt}>",
                 sender=txn.sender if txn is not None else "", rcpt=address)
        return deny(relay_refusal(ctx.session), 553)   # over TLS: "; no valid cert for gateway"

    def in_rcpthosts(self, address: str) -> bool:
        """Whether *address*'s domain is one we accept mail for."""
        domain = domain_of(address)
        if domain is None:
            return True
        keys = domain_suffixes(domain)
        listed = self.control.keys("rcpthosts")
        found = listed is not None and not listed.isdisjoint(keys)
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


PLUGINS = {"rcpthosts": RelayPolicy.from_setup}
