"""TLS for the SMTP service: the server context STARTTLS uses, and how
the Received line names the session's TLS.

The certificate and key come from one PEM file (``certs/servercert.pem``,
as upstream qmail-smtpd).  ``TLS_CIPHER_LIST`` (else control
``tlsserverciphers``) sets the TLS 1.2 cipher list; control
``tlsservermethod`` (``TLSv1_2``, ``TLSv1_3`` …) pins the protocol version
as upstream's ``*_server_method()`` did.  A :class:`ServerTLS` is built at
start and on SIGHUP; contexts are cached per (ciphers, method).
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.logger import Logger

log = Logger()

METHODS = {
    "TLSv1": SSL.TLS1_VERSION, "TLSv1_1": SSL.TLS1_1_VERSION,
    "TLSv1_2": SSL.TLS1_2_VERSION, "TLSv1_3": SSL.TLS1_3_VERSION,
}


class ServerTLS:
    """Server contexts from one PEM holding the certificate and its key."""

    def __init__(self, pem: bytes):
        self.certificate = ssl.PrivateCertificate.loadPEM(pem)
        self._options: dict[tuple[str | None, str | None], ssl.CertificateOptions] = {}

    @classmethod
    def from_file(cls, path) -> "ServerTLS | None":
        """None when *path* does not exist or cannot be loaded (logged)."""
        try:
            with open(path, "rb") as f:
                pem = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.error("cannot read {path}: {err}", path=path, err=e)
            return None
        try:
            return cls(pem)
        except Exception as e:
            log.error("cannot load certificate {path}: {err}", path=path, err=e)
            return None

    def options(self, ciphers: str | None = None, method: str | None = None):
        """The context factory for ``transport.startTLS``."""
        key = (ciphers or None, method or None)
        opts = self._options.get(key)
        if opts is None:
            opts = self.certificate.options()
            ctx = opts.getContext()
            if ciphers:
                try:
                    ctx.set_cipher_list(ciphers.encode("ascii"))
                except (SSL.Error, UnicodeEncodeError):
                    log.error("invalid TLS cipher list {c!r}; using the default", c=ciphers)
            version = METHODS.get((method or "").strip())
            if version is not None:
                ctx.set_min_proto_version(version)
                ctx.set_max_proto_version(version)
            self._options[key] = opts
        return opts


def describe(transport) -> str | None:
    """Upstream's Received prefix: ``(TLSv1.3 TLS_AES_256_GCM_SHA384 encrypted)``."""
    conn = getattr(transport, "getHandle", lambda: None)()
    if conn is None or not hasattr(conn, "get_cipher_name"):
        return None
    try:
        version, cipher = conn.get_protocol_version_name(), conn.get_cipher_name()
    except Exception:
        return None
    if not cipher:
        return None
    return f"({version} {cipher} encrypted)"
