"""Plugins over the virtual-domain store: CHECKRECIPIENT and CHECKRELAY.

``checkrecipient`` runs qmail-smtpd's recipient check
(:class:`~indimail.vdomain.recipients.RecipientCheck`: ``CHECKRECIPIENT``
1-3, the ``recipients`` extension, ``chkrcptdomains``,
``MAX_RCPT_ERRCOUNT`` and the 5-second penalty) before ``rcpthosts``.

``checkrelay`` is POP-before-SMTP: under ``CHECKRELAY`` a client whose IP
logged in by POP3/IMAP within ``RELAY_CLEAR_MINUTES`` (the relay table)
gets ``RELAYCLIENT`` and ``AUTHENTICATED=1`` for the session, looked up
once at connect.  A database error there does not end the session; only
its relaying recipients are deferred (451), as upstream answers then.
Both do nothing (no database is touched) when their variable is unset.
"""

from __future__ import annotations

from twisted.internet import defer

from indimail.fastlog import Logger
from indimail.plugins.api import ORDER_CHECKS, ORDER_FIRST, denysoft

log = Logger()

DB_ERROR = "Sorry, I got a temporary database error (#4.3.2)"
ERROR_NOTE = "checkrelay_error"


def _store_opener(setup):
    """A callable giving the home's shared store, or None without one."""
    from indimail.vdomain.credchecker import shared_store, store_configured
    home, env, reactor = setup.home, setup.env, setup.reactor
    if home is None or not store_configured(home, env):
        return None
    return lambda: shared_store(home, env, reactor)


class CheckRecipient:
    name = "checkrecipient"
    order = ORDER_CHECKS

    def __init__(self, setup):
        from indimail.vdomain.recipients import RecipientCheck
        self.check = None
        if setup.home is not None:
            self.check = RecipientCheck(setup.control, setup.home, _store_opener(setup),
                                        reactor=setup.reactor)

    def hook_rcpt(self, ctx, recipient: str):
        env = ctx.env
        if self.check is None or ("CHECKRECIPIENT" not in env and "MAX_RCPT_ERRCOUNT" not in env):
            return None
        txn = ctx.transaction
        # a Result, one Deferred on the store's read, or (rarely) a coroutine
        return self.check.verdict_now(env, recipient, sender=txn.sender, notes=txn.notes)


class CheckRelay:
    name = "checkrelay"
    order = ORDER_FIRST + 50

    def __init__(self, setup):
        from indimail.policy.rcpthosts import RelayPolicy
        self.opener = _store_opener(setup) if setup.home is not None else None
        self.local = RelayPolicy(setup.control)

    def hook_connect(self, ctx):
        if "CHECKRELAY" not in ctx.env or self.opener is None:
            return None
        if ctx.env.get("RELAYCLIENT") is not None:
            return None
        return defer.ensureDeferred(self._lookup(ctx))

    async def _lookup(self, ctx):
        from indimail.vdomain.relaytable import check_relay
        try:
            store = await self.opener()
            changes = await check_relay(store, ctx.env, ctx.remote_ip, ctx.clock.seconds())
        except Exception:
            log.failure("relay table lookup for {ip} failed", ip=ctx.remote_ip)
            ctx.session.notes[ERROR_NOTE] = True
            return None
        if changes:
            ctx.session.env = ctx.env.apply(list(changes.items()))
        return None

    def hook_rcpt(self, ctx, recipient: str):
        """After a failed lookup, a recipient that needs relaying waits (451)."""
        if not ctx.session.notes.get(ERROR_NOTE) or ctx.relayclient:
            return None
        return None if self.local.in_rcpthosts(recipient) else denysoft(DB_ERROR, 451)


PLUGINS = {"checkrecipient": CheckRecipient, "checkrelay": CheckRelay}
