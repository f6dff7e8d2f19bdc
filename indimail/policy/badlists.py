"""Sender and recipient lists: badmailfrom, badrcptto, goodrcptto,
blackholedsender, blackholedrcpt and spamignore, as qmail-smtpd applies them.

Each list family is a control file, its ``*patterns`` companion and the
variables naming other files (upstream ``open_control_once()``), matched
with upstream ``address_match()`` (:class:`~indimail.policy.lists.AddressList`).
They apply to every client, relay clients and authenticated ones included,
as upstream.  Order within MAIL follows ``smtp_mail()``: badmailfrom
refuses, spamignore and relaymailfrom adjust, blackholedsender discards
last (upstream only marks NULLQUEUE there and lets the other checks run);
within RCPT ``smtp_rcpt()``: goodrcptto, badrcptto, ... and
blackholedrcpt just before rcpthosts, only for recipients it would accept.
"""

from __future__ import annotations

from indimail.plugins.api import (ORDER_RECIPIENT, ORDER_RELAY, ORDER_SENDER, deny, denysoft,
                                  discard)
from indimail.policy.lists import AddressList, ListError
from indimail.policy.rcpthosts import RelayPolicy

LOCAL_FAILURE = "Requested action aborted: local system failure (#4.3.0)"
BAD_SENDER = "sorry, your envelope sender has been denied (#5.7.1)"
BAD_RECIPIENT = "sorry, your envelope recipient has been denied (#5.7.1)"


def prefix(ctx) -> dict:
    """The fields of upstream's ``qmail-smtpd: pid N IP`` log prefix."""
    return {"pid": getattr(ctx.settings, "pid", 0), "ip": ctx.remote_ip}


async def address_match(ctx, family: AddressList, value: str):
    """``(matched, None)`` or ``(None, 451 Result)`` when the list could not be
    searched (upstream ``err_addressmatch()``)."""
    try:
        return await family.match(value, ctx.env), None
    except ListError as exc:
        ctx.log.error("qmail-smtpd: pid {pid} {ip} address_match: {fn}: {err}",
                      fn=family.list_name(ctx.env), err=str(exc), **prefix(ctx))
        return None, denysoft(LOCAL_FAILURE, 451)


def _sender(ctx) -> str:
    txn = ctx.transaction
    return txn.sender if txn is not None else ""


class _ListPlugin:
    """A plugin over one :class:`AddressList` family."""

    name = ""
    order = ORDER_SENDER
    family_args: tuple = ()

    def __init__(self, setup):
        self.control = setup.control
        self.family = AddressList(setup.control, *self.family_args, setup=setup)

    @classmethod
    def factory(cls, setup):
        return cls(setup)


class BadMailFrom(_ListPlugin):
    """``badmailfrom``/``badmailpatterns``: 553 for a refused envelope sender."""

    name = "badmailfrom"
    order = ORDER_SENDER
    family_args = ("badmailfrom", "BADMAILFROM", "badmailpatterns", "BADMAILPATTERNS")

    def hook_mail(self, ctx, sender: str):
        return None if self.family.known_empty(ctx.env) else self._mail(ctx, sender)

    async def _mail(self, ctx, sender: str):
        found, failure = await address_match(ctx, self.family, sender)
        if failure:
            return failure
        if found:
            ctx.log.info("qmail-smtpd: pid {pid} {ip} Invalid SENDER address: MAIL from "
                         "<{sender}>", sender=sender, **prefix(ctx))
            return deny(BAD_SENDER, 553)
        return None


class SpamIgnore(_ListPlugin):
    """``spamignore``/``spamignorepatterns``: when ``SPAMFILTER`` is set, a
    listed sender's message skips the spam filter — upstream unsets
    SPAMFILTER; here for this transaction only (the note ``spamignore`` says so)."""

    name = "spamignore"
    order = ORDER_SENDER + 10
    family_args = ("spamignore", "SPAMIGNORE", "spamignorepatterns", "SPAMIGNOREPATTERNS")

    def hook_mail(self, ctx, sender: str):
        if "SPAMFILTER" not in ctx.env or self.family.known_empty(ctx.env):
            return None
        return self._mail(ctx, sender)

    async def _mail(self, ctx, sender: str):
        found, failure = await address_match(ctx, self.family, sender)
        if failure:
            return failure
        if found:
            ctx.session.transaction_env(ctx.env.unset("SPAMFILTER"))
            if ctx.transaction is not None:
                ctx.transaction.notes["spamignore"] = True
        return None


class BlackholedSender(_ListPlugin):
    """``blackholedsender``/``blackholedpatterns``: the client sees success,
    the message is never queued (DISCARD at MAIL)."""

    name = "blackholedsender"
    order = ORDER_RELAY - 20
    family_args = ("blackholedsender", "BLACKHOLEDSENDER", "blackholedpatterns",
                   "BLACKHOLEDPATTERNS")

    def hook_mail(self, ctx, sender: str):
        return None if self.family.known_empty(ctx.env) else self._mail(ctx, sender)

    async def _mail(self, ctx, sender: str):
        found, failure = await address_match(ctx, self.family, sender)
        if failure:
            return failure
        if found:
            ctx.log.info("qmail-smtpd: pid {pid} {ip} Blackholed SENDER address: MAIL {sender}",
                         sender=sender, **prefix(ctx))
            return discard()
        return None


GOOD_NOTE = "goodrcptto"


def _good_notes(ctx) -> dict:
    """The transaction's goodrcptto findings (a throwaway dict outside one)."""
    txn = ctx.transaction
    return txn.notes.setdefault(GOOD_NOTE, {}) if txn is not None else {}


async def is_goodrcpt(ctx, family: AddressList, recipient: str):
    """Whether *recipient* is in goodrcptto/goodrcptpatterns, remembered in
    ``transaction.notes["goodrcptto"]`` (a dict address → bool) so every
    plugin of this RCPT (badrcptto, blackholedrcpt, CHECKRECIPIENT) agrees.
    Returns ``(bool, None)`` or ``(None, 451 Result)``."""
    notes = _good_notes(ctx)
    if recipient in notes:
        return notes[recipient], None
    found, failure = await address_match(ctx, family, recipient)
    if failure:
        return None, failure
    notes[recipient] = bool(found)
    return bool(found), None


async def listed_unless_good(ctx, good: AddressList, family: AddressList, recipient: str):
    """``(True, None)`` when *family* lists *recipient* and goodrcptto does not,
    ``(False, None)`` otherwise, ``(None, 451 Result)`` when a list could not
    be searched."""
    is_good, failure = await is_goodrcpt(ctx, good, recipient)
    if failure:
        return None, failure
    if is_good:
        return False, None
    found, failure = await address_match(ctx, family, recipient)
    if failure:
        return None, failure
    return bool(found), None


def not_listed_now(ctx, good: AddressList, family: AddressList, recipient: str) -> bool:
    """Whether :func:`listed_unless_good` is known to answer ``(False, None)``
    without a look: *family* is known empty, and goodrcptto (asked first
    there, and able to fail with 451) has its finding noted or is known
    empty too."""
    if not family.known_empty(ctx.env):
        return False
    return recipient in _good_notes(ctx) or good.known_empty(ctx.env)


def goodrcpt_family(setup) -> AddressList:
    return AddressList(setup.control, "goodrcptto", "GOODRCPTTO", "goodrcptpatterns",
                       "GOODRCPTPATTERNS", setup=setup)


class GoodRcptTo:
    """``goodrcptto``/``goodrcptpatterns``: listed recipients bypass badrcptto,
    blackholedrcpt and CHECKRECIPIENT.  It only records its finding
    (``transaction.notes["goodrcptto"][address]``); it never accepts."""

    name = "goodrcptto"
    order = ORDER_RECIPIENT - 10

    def __init__(self, setup):
        self.family = goodrcpt_family(setup)

    @classmethod
    def factory(cls, setup):
        return cls(setup)

    def hook_rcpt(self, ctx, recipient: str):
        if self.family.known_empty(ctx.env):
            _good_notes(ctx).setdefault(recipient, False)   # keep an earlier finding
            return None
        return self._rcpt(ctx, recipient)

    async def _rcpt(self, ctx, recipient: str):
        _good, failure = await is_goodrcpt(ctx, self.family, recipient)
        return failure


class BadRcptTo(_ListPlugin):
    """``badrcptto``/``badrcptpatterns``: 553 for a refused recipient, unless
    goodrcptto lists it."""

    name = "badrcptto"
    order = ORDER_RECIPIENT
    family_args = ("badrcptto", "BADRCPTTO", "badrcptpatterns", "BADRCPTPATTERNS")

    def __init__(self, setup):
        super().__init__(setup)
        self.good = goodrcpt_family(setup)

    def hook_rcpt(self, ctx, recipient: str):
        return None if not_listed_now(ctx, self.good, self.family, recipient) \
            else self._rcpt(ctx, recipient)

    async def _rcpt(self, ctx, recipient: str):
        found, failure = await listed_unless_good(ctx, self.good, self.family, recipient)
        if failure:
            return failure
        if found:
            ctx.log.info("qmail-smtpd: pid {pid} {ip} Invalid RECIPIENT address: MAIL from "
                         "<{sender}> RCPT {rcpt}", sender=_sender(ctx), rcpt=recipient,
                         **prefix(ctx))
            return deny(BAD_RECIPIENT, 553)
        return None


class BlackholedRcpt(_ListPlugin):
    """``blackholedrcpt``/``blackholedrcptpatterns`` (variables ``BLACKHOLERCPT``,
    ``BLACKHOLERCPTPATTERNS``): 250 for the recipient, which is then not
    queued (DISCARD at RCPT).  Runs just before rcpthosts and leaves alone a
    recipient that rcpthosts would refuse, since upstream checks relaying first."""

    name = "blackholedrcpt"
    order = ORDER_RELAY - 10
    family_args = ("blackholedrcpt", "BLACKHOLERCPT", "blackholedrcptpatterns",
                   "BLACKHOLERCPTPATTERNS")

    def __init__(self, setup):
        super().__init__(setup)
        self.good = goodrcpt_family(setup)
        self.relay = RelayPolicy(setup.control)

    def relay_allowed(self, ctx, recipient: str) -> bool:
        txn = ctx.transaction
        if ctx.env.get("RELAYCLIENT") is not None or ctx.session.notes.get("relay"):
            return True
        if txn is not None and txn.notes.get("relay"):
            return True
        return self.relay.in_rcpthosts(recipient)

    def hook_rcpt(self, ctx, recipient: str):
        return None if not_listed_now(ctx, self.good, self.family, recipient) \
            else self._rcpt(ctx, recipient)

    async def _rcpt(self, ctx, recipient: str):
        found, failure = await listed_unless_good(ctx, self.good, self.family, recipient)
        if failure:
            return failure
        if found and self.relay_allowed(ctx, recipient):
            ctx.log.info("qmail-smtpd: pid {pid} {ip} Blackholed RECIPIENT address: MAIL from "
                         "<{sender}> RCPT {rcpt}", sender=_sender(ctx), rcpt=recipient,
                         **prefix(ctx))
            return discard()
        return None


PLUGINS = {
    "badmailfrom": BadMailFrom.factory,
    "spamignore": SpamIgnore.factory,
    "blackholedsender": BlackholedSender.factory,
    "goodrcptto": GoodRcptTo.factory,
    "badrcptto": BadRcptTo.factory,
    "blackholedrcpt": BlackholedRcpt.factory,
}
