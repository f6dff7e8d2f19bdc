"""The ``antispoofing`` plugin: local senders must authenticate
(``ANTISPOOFING``, and ``CHECKSENDER``).

With ``ANTISPOOFING`` set, a MAIL FROM in one of our own domains (in
``rcpthosts``) is taken only from a client that may relay: authenticated
with AUTH, ``RELAYCLIENT`` (tcprules), a relay list (relayclients,
relaymailfrom, ...) or POP/IMAP-before-SMTP (a fresh row for its IP in the
store's ``relay`` table, which then lets it relay for the session).
Anyone else claiming to be a local user is refused::

    530 authentication required for local users (#5.7.1)

``CHECKSENDER`` (the seed's FAQ: "force authenticated SMTP or POP/IMAP
before SMTP for my own domains") does the same and, like ``CUGMAIL``,
also requires the local sender to be a user who exists, is active and may
use SMTP (``553 SMTP Access denied (#5.7.1)``).
"""

from __future__ import annotations

from twisted.internet import defer

from indimail.fastlog import Logger
from indimail.plugins.api import ORDER_SENDER, deny, denysoft
from indimail.policy.rcpthosts import RelayPolicy

from .accesslist import session_pid
from .cugmail import DATABASE_ERROR, LocalSenders, refuse_unless_user

log = Logger()

AUTH_REQUIRED = "authentication required for local users (#5.7.1)"


def may_relay(ctx) -> bool:
    """Authenticated, RELAYCLIENT, or a plugin granted relaying."""
    txn = ctx.transaction
    return bool(ctx.relayclient or ctx.session.notes.get("relay")
                or (txn is not None and txn.notes.get("relay")))


class AntiSpoofing:
    """The mail hook of ``ANTISPOOFING``/``CHECKSENDER``."""

    name = "antispoofing"
    order = ORDER_SENDER + 70       # after relaymailfrom and cugmail, as upstream

    def __init__(self, relay: RelayPolicy, senders: LocalSenders):
        self.relay = relay
        self.senders = senders

    @classmethod
    def from_setup(cls, setup) -> "AntiSpoofing":
        return cls(RelayPolicy(setup.control), LocalSenders.from_setup(setup))

    def hook_mail(self, ctx, sender: str):
        env = ctx.env
        if not (env.flag("ANTISPOOFING") or env.flag("CHECKSENDER")):
            return None
        if not sender or not self.relay.in_rcpthosts(sender):
            return None
        return defer.ensureDeferred(self._check(ctx, sender))

    async def _check(self, ctx, sender: str):
        if not may_relay(ctx):
            try:
                allowed = await self.pop_before_smtp(ctx)
            except Exception:
                log.failure("qmail-smtpd: pid {pid} {ip} Database error", pid=session_pid(ctx),
                            ip=ctx.remote_ip)
                return denysoft(DATABASE_ERROR, 451)
            if not allowed:
                log.info("qmail-smtpd: pid {pid} {ip} unauthenticated local SENDER address: "
                         "MAIL from <{sender}>", pid=session_pid(ctx), ip=ctx.remote_ip,
                         sender=sender)
                return deny(AUTH_REQUIRED, 530)
        if ctx.env.flag("CHECKSENDER"):
            return await refuse_unless_user(ctx, self.senders, sender)
        return None

    async def pop_before_smtp(self, ctx) -> bool:
        """upstream ``pop_bef_smtp()``: the relay table lets this IP relay
        (and then relay it may, for the rest of the session)."""
        store = await self.senders.stores.get()
        if store is None:
            return False
        from indimail.vdomain.relaytable import relay_allowed
        if not await relay_allowed(store, ctx.remote_ip, ctx.clock.seconds(), ctx.env):
            return False
        ctx.session.notes["relay"] = True
        return True


PLUGINS = {"antispoofing": AntiSpoofing.from_setup}
