"""TLS channel-binding data for SCRAM-PLUS (RFC 5929 tls-unique, RFC 9266 tls-exporter).

TLS 1.3 has no tls-unique; there the binding is the exporter value with
label ``EXPORTER-Channel-Binding``, 32 bytes, empty context. On TLS 1.2 the
binding is the first Finished message of the latest handshake: the
client's on a full handshake (the server reads it with
``get_peer_finished()``, as qmail-smtpd does), the server's on a resumed one.
"""

from __future__ import annotations

from typing import Callable

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"


def binding_type(connection) -> str:
    """``tls-exporter`` on TLS 1.3 and later, else ``tls-unique``."""
    version = connection.get_protocol_version_name()
    return "tls-unique" if version in ("TLSv1.2", "TLSv1.1", "TLSv1") else "tls-exporter"


def channel_binding(connection, server: bool = True) -> tuple[str, bytes] | None:
    """``(type, data)`` for a pyOpenSSL ``Connection`` after its handshake, or None."""
    if connection is None or connection.get_protocol_version_name() in (None, "Unknown"):
        return None
    kind = binding_type(connection)
    if kind == "tls-exporter":
        data = connection.export_keying_material(EXPORTER_LABEL, 32, b"")
    else:
        # The side that sent the first Finished: client on full handshakes.
        mine_first = resumed(connection) == server
        data = connection.get_finished() if mine_first else connection.get_peer_finished()
    return (kind, data) if data else None


def resumed(connection) -> bool:
    """Whether the TLS session was resumed (pyOpenSSL has no public call for it)."""
    try:
        from OpenSSL._util import lib
        return bool(lib.SSL_session_reused(connection._ssl))
    except (ImportError, AttributeError):
        return False


def transport_binding(transport) -> Callable[[], tuple[str, bytes] | None]:
    """A callable for :class:`~indimail.auth.mechanisms.AuthContext` over a Twisted TLS transport."""
    def get():
        conn = getattr(transport, "getHandle", lambda: None)()
        if conn is None or not hasattr(conn, "export_keying_material"):
            return None
        return channel_binding(conn, server=True)
    return get
