"""tlsclients: relaying for clients that present a certificate
(qmail-smtpd's ``tls_verify()``).

With ``clientca.pem`` in the certificate directory (``CERTDIR``, else the
home's ``certs/``; the name can be changed with ``CLIENTCA``) STARTTLS and
the SMTPS handshake (:class:`~indimail.smtp.tls.ImplicitTLS`) ask (never
require) the client for a certificate, checked against those CAs and the
CRLs of ``clientcrl.pem`` (``CLIENTCRL``) when that file exists.  A certificate
that does not verify never fails the handshake (upstream's ``verify_cb``
returns 1): the session just gains nothing.  When control ``tlsclients``
exists and the verified certificate's subject ``emailAddress`` is listed
there (compared without regard to case, as qmail's ``constmap``), the
session gets ``RELAYCLIENT`` (empty) and ``AUTHENTICATED=1`` and the
Received line notes ``(cert <email>)``.  Otherwise upstream's reason is
kept for the relay refusal: ``; no valid cert for gateway: <reason>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from indimail.fastlog import Logger
from . import reply
from .received import safe

log = Logger()

CLIENTCA = "clientca.pem"
CLIENTCRL = "clientcrl.pem"
NOT_LISTED = "email address not in my list of tlsclients"
NO_EMAIL = "contains no email address"
_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


def cert_dir(default: Path, env: Mapping[str, str]) -> Path:
    """``CERTDIR`` when set, else *default* (the home's ``certs/``)."""
    value = env.get("CERTDIR")
    return Path(value) if value else Path(default)


def _accept_any(connection, certificate, errno, depth, ok) -> bool:
    """The handshake goes on whatever the certificate: it only decides relaying."""
    return True


class ClientCA:
    """The CAs (and CRLs) client certificates are verified against."""

    def __init__(self, path: Path, ca_pem: bytes, crl_pem: bytes | None = None):
        self.path = Path(path)
        certs = x509.load_pem_x509_certificates(ca_pem)   # ValueError when none
        self.store = crypto.X509Store()
        for cert in certs:
            self.store.add_cert(crypto.X509.from_cryptography(cert))
        crls = [x509.load_pem_x509_crl(block) for block in _CRL_BLOCK.findall(crl_pem or b"")]
        for crl in crls:
            self.store.add_crl(crl)
        if crls:
            self.store.set_flags(crypto.X509StoreFlags.CRL_CHECK
                                 | crypto.X509StoreFlags.CRL_CHECK_ALL)
        self.crls = len(crls)

    @classmethod
    def load(cls, certdir: Path, env: Mapping[str, str]) -> "ClientCA | None":
        """From ``CLIENTCA``/``CLIENTCRL`` in *certdir*; None when there is
        no CA file (or it holds no certificate: logged)."""
        path = Path(certdir) / (env.get("CLIENTCA") or CLIENTCA)
        try:
            ca_pem = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.error("cannot read {path}: {err}", path=path, err=e)
            return None
        crl_path = Path(certdir) / (env.get("CLIENTCRL") or CLIENTCRL)
        try:
            crl_pem = crl_path.read_bytes()
        except FileNotFoundError:
            crl_pem = None
        except OSError as e:
            log.error("cannot read {path}: {err}", path=crl_path, err=e)
            crl_pem = None
        try:
            return cls(path, ca_pem, crl_pem)
        except Exception as e:
            log.error("cannot load client CA {path}: {err}", path=path, err=e)
            return None

    def request(self, ctx: SSL.Context) -> None:
        """Make *ctx* ask for (never require) a client certificate signed by
        one of ours."""
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, _accept_any)
        ctx.set_session_id(b"indimail-smtpd")
        try:
            ctx.load_client_ca(str(self.path).encode())
        except SSL.Error as e:   # the names are a hint to the client; go on without
            log.error("cannot load client CA names from {path}: {err}", path=self.path, err=e)

    def verify(self, cert: crypto.X509, chain) -> str | None:
        """None when *cert* verifies; else OpenSSL's reason, as upstream
        reports ``X509_verify_cert_error_string()``."""
        try:
            crypto.X509StoreContext(self.store, cert, list(chain or [])).verify_certificate()
        except crypto.X509StoreContextError as e:
            return str(e)
        return None


def certificate_email(cert: x509.Certificate) -> str | None:
    """The subject's first ``emailAddress`` (upstream looks nowhere else)."""
    found = cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    if not found:
        return None
    value = found[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ClientCheck:
    """What the client's certificate gave the session."""

    relay: bool
    email: str | None = None
    error: str | None = None


def check_client(connection, client_ca: ClientCA, clients: list[str]) -> ClientCheck:
    """upstream ``tls_verify()`` on the finished handshake of *connection*."""
    cert = connection.get_peer_certificate()
    if cert is None:
        return ClientCheck(False)
    error = client_ca.verify(cert, connection.get_peer_cert_chain())
    if error is not None:
        return ClientCheck(False, error=error)
    email = certificate_email(cert.to_cryptography())
    if not email:
        return ClientCheck(False, error=NO_EMAIL)
    listed = {line.strip().lower() for line in clients}
    if email.lower() not in listed:
        return ClientCheck(False, email, NOT_LISTED)
    return ClientCheck(True, email)


class StartTLS:
    """The protocol's ``tls``: the STARTTLS context for a session
    environment, and the tlsclients check once the handshake is done."""

    def __init__(self, server_tls, control):
        self.server_tls = server_tls
        self.control = control

    def __call__(self, env):
        """The context factory for ``transport.startTLS`` (TLS_CIPHER_LIST,
        else control ``tlsserverciphers``; control ``tlsservermethod``)."""
        control = self.control
        ciphers = env.get("TLS_CIPHER_LIST") or ":".join(control.lines("tlsserverciphers"))
        return self.server_tls.options(ciphers or None, control.value("tlsservermethod"))

    def client_check(self, connection) -> ClientCheck | None:
        """None unless certificates are asked for and ``tlsclients`` exists."""
        client_ca = getattr(self.server_tls, "client_ca", None)
        if client_ca is None or not self.control.exists("tlsclients"):
            return None
        return check_client(connection, client_ca, self.control.lines("tlsclients"))


def apply_check(session, result: ClientCheck | None) -> None:
    """Upstream: a listed certificate sets ``RELAYCLIENT`` and
    ``AUTHENTICATED=1``; a failure keeps its reason for the refusal."""
    if result is None or session.env.get("RELAYCLIENT") is not None:
        return
    if result.relay:
        session.env = session.env.set(RELAYCLIENT="", AUTHENTICATED="1")
        session.notes["tlsclient"] = result.email
    elif result.error:
        session.notes["tls_verify_err"] = result.error


def received_note(session) -> str:
    """``\\n  (cert <email>)`` for the Received line when a certificate
    allowed relaying (a continuation line, as upstream)."""
    email = session.notes.get("tlsclient")
    return f"\n  (cert {safe(email)})" if email else ""


def relay_refusal(session) -> str:
    """The 553 text for a refused relay; over TLS upstream's
    ``tls_nogateway()`` adds ``; no valid cert for gateway[: reason] ``."""
    text = reply.NO_RELAY
    if not getattr(session, "tls", False) or session.env.get("RELAYCLIENT") is not None:
        return text
    head, sep, code = text.rpartition(" #")
    reason = session.notes.get("tls_verify_err")
    suffix = "; no valid cert for gateway" + (f": {reason}" if reason else "") + " "
    return f"{head}{suffix}{sep}{code}" if sep else text + suffix
