"""What a hook sees of one SMTP session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from indimail.fastlog import Logger


@dataclass
class HookContext:
    """One hook call's view of its connection.

    ``session`` is the :class:`~indimail.smtp.session.Session` (remote_ip,
    helo, tls, authenticated, env, notes), ``transaction`` the current
    :class:`~indimail.smtp.session.Transaction` or None, ``settings`` the
    :class:`~indimail.smtp.settings.SessionSettings` in force, ``clock`` the
    injected clock.  Plugins keep per-connection state in
    ``session.notes`` and per-transaction state in ``transaction.notes``."""

    session: Any
    transaction: Any
    settings: Any
    clock: Any
    log: Logger

    @property
    def env(self):
        """The session's immutable Environment (tcprules, envrules, AUTH applied)."""
        return self.session.env

    @property
    def remote_ip(self) -> str:
        return self.session.remote_ip

    @property
    def notes(self) -> dict:
        return self.session.notes

    @property
    def relayclient(self) -> bool:
        """Whether this client may relay: ``RELAYCLIENT`` set (tcprules,
        envrules) or authenticated."""
        return self.session.env.get("RELAYCLIENT") is not None or bool(
            self.session.authenticated)
