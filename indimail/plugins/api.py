"""The plugin API: hook names, verdicts and what a hook is given.

A plugin is any object with a ``name``, an ``order`` (lower runs first
within a hook) and one or more ``hook_<stage>`` methods::

    hook_connect(ctx)              after tcprules, before the greeting
    hook_helo(ctx, helo)           HELO/EHLO argument
    hook_mail(ctx, sender)         MAIL FROM address ("" for <>)
    hook_rcpt(ctx, recipient)      each RCPT TO address
    hook_data(ctx)                 the DATA (or first BDAT) command, before 354
    hook_queue(ctx)                the whole message has arrived, before it is
                                   committed to the queue (``ctx.transaction``
                                   has ``size`` and ``headers``)
    hook_oversize(ctx)             the message exceeded DATABYTES: it is refused
                                   (552) whatever the verdict; for notices

A hook returns a :class:`Result`, ``None`` (= CONTINUE) or a Deferred of
either.  Within one hook, plugins run in ``order`` until one returns a
verdict other than CONTINUE; that verdict answers the command.  A hook
that raises is logged and answered 451; one that takes longer than its
timeout (``PLUGIN_TIMEOUT`` seconds, default 30) is DENYSOFT.  When every
rcpt hook says CONTINUE the recipient is refused: a recipient is taken
only when some plugin (normally ``rcpthosts``, the last) accepts it.

Plugins are built once per service by a factory called with a
:class:`PluginSetup`; everything about one connection lives in the
:class:`~indimail.plugins.context.HookContext` they are handed, never on
the plugin object.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from indimail.smtp.reply import Reply

HOOKS = ("connect", "helo", "mail", "rcpt", "data", "queue", "oversize")

# Conventional ``order`` bands, so that third-party plugins can place
# themselves between the built-in ones.
ORDER_FIRST = 0
ORDER_ACCESS = 100       # who may talk at all (badip, hostaccess)
ORDER_HELO = 200
ORDER_SENDER = 300       # bad/blackholed senders, spoofing
ORDER_RECIPIENT = 400    # bad/good/blackholed recipients
ORDER_CHECKS = 600       # recipient existence, access lists, CUGMAIL
ORDER_RELAY = 900        # rcpthosts/relay decides last
ORDER_DEFAULT = 500


class Verdict(enum.Enum):
    """What a hook decided."""

    CONTINUE = "continue"       # no opinion: ask the next plugin
    ACCEPT = "accept"           # take it; later plugins of this hook are skipped
    DENY = "deny"               # permanent refusal (5xx)
    DENYSOFT = "denysoft"       # temporary refusal (4xx)
    DISCONNECT = "disconnect"   # reply (4xx/5xx) and close the connection
    DISCARD = "discard"         # pretend to accept, never deliver (blackholes)


_DEFAULT_CODES = {
    Verdict.ACCEPT: 250,
    Verdict.DENY: 550,
    Verdict.DENYSOFT: 451,
    Verdict.DISCONNECT: 421,
    Verdict.DISCARD: 250,
}


@dataclass(frozen=True)
class Result:
    """A verdict with its SMTP reply.

    *address* lets an accepting rcpt hook rewrite the recipient (RELAYCLIENT
    appends to it); *lines* are further reply lines."""

    verdict: Verdict
    code: int | None = None
    text: str | None = None
    lines: tuple[str, ...] = ()
    address: str | None = None

    @property
    def final(self) -> bool:
        return self.verdict is not Verdict.CONTINUE

    def reply(self, default_text: str = "ok") -> Reply:
        code = self.code or _DEFAULT_CODES.get(self.verdict, 250)
        return Reply.of(code, self.text or default_text, *self.lines)


CONTINUE = Result(Verdict.CONTINUE)


def accept(text: str | None = None, *, address: str | None = None, code: int = 250) -> Result:
    return Result(Verdict.ACCEPT, code, text, address=address)


def deny(text: str, code: int = 550, *more: str) -> Result:
    return Result(Verdict.DENY, code, text, tuple(more))


def denysoft(text: str, code: int = 451, *more: str) -> Result:
    return Result(Verdict.DENYSOFT, code, text, tuple(more))


def disconnect(text: str, code: int = 421, *more: str) -> Result:
    return Result(Verdict.DISCONNECT, code, text, tuple(more))


def discard(text: str | None = None) -> Result:
    return Result(Verdict.DISCARD, 250, text)


@dataclass
class PluginSetup:
    """What a plugin factory is given once, when the service starts.

    *control* is the service's :class:`~indimail.config.control.ControlFiles`
    (cached, refreshed on change; reading it blocks, so plugins read it in a
    thread or accept the cost of a cached stat), *env* the service's base
    environment, *reactor* for timers and threads, *options* anything a
    deployment passes to plugins by name."""

    control: Any
    home: Any = None
    env: Mapping[str, str] = field(default_factory=dict)
    reactor: Any = None
    options: dict[str, Any] = field(default_factory=dict)
