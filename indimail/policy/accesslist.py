"""The ``accesslist`` plugin: which senders may mail which recipients.

A line of ``control/accesslist`` (another file: ``ACCESSLIST``) is
``type:sender:recipient``.  A ``rcpt`` line closes the recipients it
matches to every sender but the ones it names; a ``from`` line closes the
senders it matches to every recipient but the ones it names::

    rcpt:ceo@indimail.org:country_distribution_list@indimail.org
    from:recruiter@gmail.com:hr_manager@indimail.org

So a transaction is refused when some ``rcpt`` line matches the recipient
or some ``from`` line matches the sender, unless a line (of either type)
matches both.  Patterns are compared whole first, then as wildmat
patterns, or, with ``QREGEX`` (variable, else ``control/qregex``), as
case-insensitive regular expressions (regex(3), unanchored).  The null
sender and the recipients postmaster and abuse are never refused (the
RFCs require them to get through), as upstream's ``mail_acl.c``.

Refusal: ``553 sorry, sites access list denies transaction (#5.7.1)``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from indimail.config.control import strip_lines
from indimail.config.wildmat import wildmat
from indimail.fastlog import Logger
from indimail.plugins.api import ORDER_CHECKS, deny, denysoft
from indimail.policy.lists import CHECK_INTERVAL, ControlWatch, QregexSwitch, plugin_reactor

log = Logger()

DENIED = "sorry, sites access list denies transaction (#5.7.1)"
FAILURE = "Requested action aborted: local system failure (#4.3.0)"


@dataclass(frozen=True)
class Rule:
    """One accesslist line."""

    kind: str          # "rcpt" or "from"
    sender: str
    recipient: str
    line: str


class AccessListError(ValueError):
    """A pattern is not a valid regular expression."""


def parse_accesslist(lines: list[str]) -> list[Rule]:
    """The rules of an accesslist; a line with another type, or without the
    second ``:``, is ignored as upstream does."""
    rules = []
    for line in lines:
        kind, sender = line[:4], line[5:]
        if line[4:5] != ":" or kind not in ("rcpt", "from"):
            continue
        sender, colon, recipient = sender.partition(":")
        if not colon:
            continue
        rules.append(Rule(kind, sender, recipient, line))
    return rules


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as e:
        raise AccessListError(f"{pattern}: {e}") from None


def pattern_matches(value: str, pattern: str, qregex: bool) -> bool:
    """Upstream's comparison: the whole string, then wildmat or regex."""
    if value == pattern:
        return True
    if qregex:
        return _regex(pattern).search(value) is not None
    return wildmat(pattern, value)


def exempt(sender: str, recipient: str) -> bool:
    """Bounces and mail to postmaster/abuse always pass."""
    if not sender or sender == "#@[]":
        return True
    return any(recipient == name or recipient.startswith(name + "@")
               for name in ("postmaster", "abuse"))


def denied(rules: list[Rule], sender: str, recipient: str, qregex: bool = False) -> Rule | None:
    """The rule that refuses *sender* → *recipient*, or None when allowed.

    Raises :class:`AccessListError` for a bad regular expression."""
    if exempt(sender, recipient):
        return None
    closing = None
    for rule in rules:
        rcpt_hit = pattern_matches(recipient, rule.recipient, qregex)
        from_hit = pattern_matches(sender, rule.sender, qregex)
        if rcpt_hit and from_hit:
            return None          # an explicit allow for this pair
        if closing is None and ((rule.kind == "rcpt" and rcpt_hit)
                                or (rule.kind == "from" and from_hit)):
            closing = rule
    return closing


def _read_rules(data: bytes) -> list[Rule]:
    return parse_accesslist(strip_lines(data))


def control_name(env, variable: str, default: str) -> str:
    """The file a ``VARIABLE`` names (relative to the control directory), else *default*."""
    value = env.get(variable)
    return value if value else default


def session_pid(ctx) -> int:
    return getattr(ctx.settings, "pid", None) or os.getpid()


class AccessList:
    """The rcpt hook applying ``accesslist``."""

    name = "accesslist"
    order = ORDER_CHECKS

    def __init__(self, control, reactor, check_interval: float = CHECK_INTERVAL):
        self.files = ControlWatch(control, _read_rules, reactor, check_interval)
        self.qregex = QregexSwitch(control, reactor, check_interval)

    @classmethod
    def from_setup(cls, setup) -> "AccessList":
        return cls(setup.control, plugin_reactor(setup))

    def hook_rcpt(self, ctx, recipient: str):
        """None at once while the rules file is known absent, else the
        check's coroutine (the plugin chain drives it; no Deferred of its own)."""
        name = control_name(ctx.env, "ACCESSLIST", "accesslist")
        return None if self.files.known_missing(name) else self._check(ctx, recipient, name)

    async def _check(self, ctx, recipient: str, name: str):
        rules = await self.files.get(name)
        if not rules:
            return None
        sender = ctx.transaction.sender if ctx.transaction is not None else ""
        try:
            rule = denied(rules, sender, recipient, await self.qregex.enabled(ctx.env))
        except AccessListError as e:
            log.error("qmail-smtpd: pid {pid} {ip} accesslist: {error}", pid=session_pid(ctx),
                      ip=ctx.remote_ip, error=str(e))
            return denysoft(FAILURE, 451)
        if rule is None:
            return None
        log.info("qmail-smtpd: pid {pid} {ip} Invalid RECIPIENT address: MAIL from <{sender}> "
                 "RCPT {rcpt}", pid=session_pid(ctx), ip=ctx.remote_ip, sender=sender,
                 rcpt=recipient)
        return deny(DENIED, 553)


PLUGINS = {"accesslist": AccessList.from_setup}
