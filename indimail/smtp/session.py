"""Per-connection and per-transaction state of an SMTP session.

The session's :class:`~indimail.config.environment.Environment` is its own
immutable copy: tcprules changed it at connect, later stages (envrules,
AUTH) replace it with changed copies; nothing here touches ``os.environ``.
from.envrules and rcpt.envrules change it for one transaction only:
:meth:`Session.transaction_env` keeps the connection's environment (and
settings) aside and :meth:`Session.reset` puts them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from indimail.config.environment import Environment


@dataclass
class Transaction:
    """One MAIL ... DATA exchange."""

    sender: str
    params: dict[str, str | None] = field(default_factory=dict)
    recipients: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)     # plugins' per-transaction state
    discard: bool = False                         # a plugin blackholed the whole message
    size: int = 0                                 # set when the data has arrived
    headers: list[tuple[str, str]] = field(default_factory=list)   # ditto (first 64 KiB)


@dataclass
class Session:
    """What is known about the client of one connection."""

    env: Environment
    remote_ip: str = "unknown"
    remote_port: int = 0
    local_ip: str = "unknown"
    local_port: int = 0
    helo: str | None = None
    esmtp: bool = False
    tls: bool = False
    authenticated: str | None = None
    transaction: Transaction | None = None
    messages: int = 0
    notes: dict = field(default_factory=dict)  # plugins' per-connection state
    conn_env: Environment | None = None       # set aside while a transaction changed env
    txn_settings: object | None = None       # settings re-derived for the transaction

    @property
    def remote_host(self) -> str | None:
        """``TCPREMOTEHOST`` when known (tcpserver without -H, or tcprules)."""
        host = self.env.get("TCPREMOTEHOST")
        return host if host and host != "unknown" else None

    @property
    def remote_info(self) -> str | None:
        return self.authenticated or self.env.get("TCPREMOTEINFO") or None

    @property
    def protocol_name(self) -> str:
        """The ``with`` word of the Received line: upstream always says
        ESMTP, plus ``S`` over TLS and ``A`` when authenticated."""
        return "ESMTP" + ("S" if self.tls else "") + ("A" if self.authenticated else "")

    def transaction_env(self, env: Environment, settings=None) -> None:
        """Use *env* (and *settings*, if re-derived) until :meth:`reset`."""
        if self.conn_env is None:
            self.conn_env = self.env
        self.env = env
        if settings is not None:
            self.txn_settings = settings

    def reset(self) -> None:
        """End the transaction: back to the connection's environment."""
        self.transaction = None
        if self.conn_env is not None:
            self.env = self.conn_env
            self.conn_env = None
        self.txn_settings = None
