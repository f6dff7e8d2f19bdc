"""TLS for the SMTP service: the server context STARTTLS uses, and how
the Received line names the session's TLS.

The certificate and key come from one PEM file (``certs/servercert.pem``,
as upstream qmail-smtpd).  ``TLS_CIPHER_LIST`` (else control
``tlsserverciphers``) sets the TLS 1.2 cipher list; control
``tlsservermethod`` (``TLSv1_2``, ``TLSv1_3`` …) pins the protocol version
as upstream's ``*_server_method()`` did.  A :class:`ServerTLS` is built at
start and on SIGHUP (:func:`load_server_tls`); contexts are cached per
(ciphers, method).  As upstream, ``CERTDIR`` moves the certificate
directory and ``SERVERCERT`` names the certificate file in it; with a
``clientca.pem`` there STARTTLS also asks for a client certificate
(:mod:`.tlsclients`).

An SMTPS listener presents the certificate its ``ssl:`` endpoint string
names; :func:`smtps_endpoint` wraps that in :class:`ImplicitTLS` so the
implicit-TLS handshake asks for a client certificate exactly when STARTTLS
would, and tlsclients applies there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from OpenSSL import SSL
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from indimail.fastlog import Logger
from .tlsclients import ClientCA, cert_dir

log = Logger()

METHODS = {
    "TLSv1": SSL.TLS1_VERSION, "TLSv1_1": SSL.TLS1_1_VERSION,
    "TLSv1_2": SSL.TLS1_2_VERSION, "TLSv1_3": SSL.TLS1_3_VERSION,
}


class ServerTLS:
    """Server contexts from one PEM holding the certificate and its key;
    *client_ca* (optional) makes them ask for a client certificate."""

    def __init__(self, pem: bytes, client_ca: ClientCA | None = None):
        self.certificate = ssl.PrivateCertificate.loadPEM(pem)
        self.client_ca = client_ca
        self._options: dict[tuple[str | None, str | None], ssl.CertificateOptions] = {}

    @classmethod
    def from_file(cls, path, client_ca: ClientCA | None = None) -> "ServerTLS | None":
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
            return cls(pem, client_ca)
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
            if self.client_ca is not None:
                self.client_ca.request(ctx)
            self._options[key] = opts
        return opts


def load_server_tls(default_dir: Path, env: Mapping[str, str]) -> ServerTLS | None:
    """``$CERTDIR/$SERVERCERT`` (default ``certs/servercert.pem``) with the
    client CAs of the same directory; None without a usable certificate."""
    certdir = cert_dir(default_dir, env)
    client_ca = ClientCA.load(certdir, env)
    return ServerTLS.from_file(certdir / (env.get("SERVERCERT") or "servercert.pem"), client_ca)


@implementer(IOpenSSLServerConnectionCreator)
class ImplicitTLS:
    """An SMTPS listener's TLS, with the certificate its endpoint string
    names.  Each connection uses options made for its session's
    :class:`ServerTLS` (the protocol's ``tls.server_tls``, the one
    ``handshakeCompleted`` checks the client certificate with): they ask for
    a client certificate exactly when STARTTLS would.  A SIGHUP makes a new
    ServerTLS, so the next connection re-reads the endpoint's certificate
    (*load*) and the client CAs apply afresh; pyOpenSSL forbids changing a
    context once used, hence new options rather than edits."""

    def __init__(self, options: ssl.CertificateOptions,
                 load: Callable[[], ssl.CertificateOptions]):
        self._load = load
        self._current: tuple[ServerTLS | None, ssl.CertificateOptions] = (None, options)

    def options_for(self, server_tls: ServerTLS | None) -> ssl.CertificateOptions:
        made_for, options = self._current
        if server_tls is made_for:
            return options
        try:
            options = self._load()
        except Exception:   # keep serving the old certificate, as ServerTLS does
            log.failure("cannot reload the SMTPS certificate; keeping the old one")
            self._current = (server_tls, options)
            return options
        client_ca = getattr(server_tls, "client_ca", None)
        if client_ca is not None:
            client_ca.request(options.getContext())
        self._current = (server_tls, options)
        return options

    def serverConnectionForTLS(self, tls_protocol) -> SSL.Connection:
        session_tls = getattr(getattr(tls_protocol, "wrappedProtocol", None), "tls", None)
        options = self.options_for(getattr(session_tls, "server_tls", None))
        return SSL.Connection(options.getContext(), None)


def smtps_endpoint(reactor, description: str):
    """``serverFromString(reactor, description)`` for an SMTPS listener: an
    ``ssl:`` endpoint's context is wrapped in :class:`ImplicitTLS`."""
    def parse():
        return endpoints.serverFromString(reactor, description)

    endpoint = parse()
    options = getattr(endpoint, "_sslContextFactory", None)
    if options is not None:
        endpoint._sslContextFactory = ImplicitTLS(options,
                                                  lambda: parse()._sslContextFactory)
    return endpoint


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
