"""Verified TLS for listed destinations (``control/tlsdestinations`` and
upstream's ``certs/tlshosts/<host>.pem``); everyone else gets
opportunistic, unverified STARTTLS.

``tlsdestinations`` (the file ``TLSDESTINATIONS`` names) has lines
``destination:cafile[:ciphers[:port]]``.  *destination* is a host name, a
``.domain`` (any host below it) or ``*`` (every destination); it is
matched against the host connected to (MX or relay name) and then the
recipient domain, exact name first, then parent domains, then ``*``.
``!destination`` (nothing after it) turns TLS off for it.  *cafile* is a
PEM file of trusted CAs (relative paths are under the home's ``certs/``);
empty means the system's trust store.  *ciphers* is an OpenSSL cipher list
(``tlsclientciphers`` otherwise).  With *port*, the line only applies to
connections to that port.

For a listed destination the server must offer STARTTLS (or speak SMTPS),
its certificate must verify against the CA file and must name the host
(subjectAltName DNS entries, else the commonName; ``*.domain`` matches one
label), or the delivery is deferred with upstream's texts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from zope.interface import implementer

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator


@dataclass(frozen=True)
class TLSPolicy:
    """What a destination's TLS must satisfy."""

    cafile: str | None          # None: the system's trust store
    ciphers: str | None = None
    source: str = "tlsdestinations"

    @property
    def label(self) -> str:
        """The name upstream's messages give (the CA file)."""
        return self.cafile or "system CA store"


def _keys(name: str) -> list[str]:
    name = name.lower().rstrip(".")
    out = [name]
    for i, ch in enumerate(name):
        if ch == ".":
            out.append(name[i:])
    return out


def parse(lines: list[str]) -> list[tuple[str, str | None, str | None, int | None, bool]]:
    """(key, cafile, ciphers, port, disabled) per line."""
    entries = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        disabled = line.startswith("!")
        if disabled:
            line = line[1:]
        key, _, rest = line.partition(":")
        fields = rest.split(":") if rest else []
        cafile = fields[0] if fields and fields[0] else None
        ciphers = fields[1] if len(fields) > 1 and fields[1] else None
        port = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None
        entries.append((key.strip().lower(), cafile, ciphers, port, disabled))
    return entries


def lookup(entries, names: list[str], port: int):
    """The first entry for *names* (exact, parents, then ``*``) and *port*."""
    candidates = [key for name in names if name for key in _keys(name)] + ["*"]
    for key in candidates:
        for entry in entries:
            if entry[0] == key and (entry[3] is None or entry[3] == port):
                return entry
    return None


def tls_policy(env, control, certs: Path, host: str, domain: str,
               port: int) -> TLSPolicy | bool | None:
    """The policy for a connection to *host* (for *domain*): a
    :class:`TLSPolicy` when the certificate must be verified, False when
    TLS is turned off, None for opportunistic TLS.  Reads files."""
    entries = parse(control.lines(env.get("TLSDESTINATIONS") or "tlsdestinations"))
    entry = lookup(entries, [host, domain], port)
    if entry is not None:
        _key, cafile, ciphers, _port, disabled = entry
        if disabled:
            return False
        if cafile and not cafile.startswith("/"):
            cafile = str(certs / cafile)
        ciphers = ciphers or _client_ciphers(control)
        return TLSPolicy(cafile, ciphers)
    if host and "/" not in host:
        pem = certs / "tlshosts" / f"{host}.pem"
        if pem.exists():
            return TLSPolicy(str(pem), _client_ciphers(control), "tlshosts")
    return None


def _client_ciphers(control) -> str | None:
    lines = control.lines("tlsclientciphers")
    return ":".join(line.strip() for line in lines) or None


def verify_error_text(errnum: int) -> str:
    from OpenSSL._util import ffi, lib
    return ffi.string(lib.X509_verify_cert_error_string(errnum)).decode("ascii", "replace")


@implementer(IOpenSSLClientConnectionCreator)
class VerifyingCreator:
    """An OpenSSL client connection that checks the chain against the CA
    file but lets the handshake finish (upstream's ``verify_cb``), so the
    result is judged afterwards by :meth:`check` with upstream's texts."""

    def __init__(self, policy: TLSPolicy, hostname: str):
        from OpenSSL import SSL
        self.policy = policy
        self.hostname = hostname
        self.errors: list[int] = []
        self.connection = None
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3)
        if policy.cafile:
            ctx.load_verify_locations(policy.cafile)
        else:
            ctx.set_default_verify_paths()
        if policy.ciphers:
            ctx.set_cipher_list(policy.ciphers.encode())
        ctx.set_verify(SSL.VERIFY_PEER, self._verify)
        self.context = ctx

    def _verify(self, _conn, _cert, errnum, _depth, ok) -> bool:
        if errnum or not ok:
            self.errors.append(errnum)
        return True

    def clientConnectionForTLS(self, tlsProtocol):
        from OpenSSL import SSL
        connection = SSL.Connection(self.context, None)
        if _literal(self.hostname) is None:
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        connection.set_connect_state()
        self.connection = connection
        return connection

    def check(self) -> str | None:
        """None when the peer is verified, else upstream's reason."""
        if self.errors:
            return (f"TLS unable to verify server with {self.policy.label}: "
                    f"{verify_error_text(self.errors[0])}")
        cert = self.connection.get_peer_certificate() if self.connection else None
        if cert is None:
            return f"TLS unable to verify server {self.hostname}: no certificate provided"
        return name_mismatch(cert.to_cryptography(), self.hostname)


def _literal(name: str) -> str | None:
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return None


def match_partner(pattern: str, host: str) -> bool:
    """Upstream's ``match_partner``: equal ignoring case, or ``*.rest``
    where *rest* is *host* after its first label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "." in host:
        return pattern[2:] == host.split(".", 1)[1]
    return False


def name_mismatch(cert, host: str) -> str | None:
    """None when the certificate (a ``cryptography`` x509) names *host*."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    ip = _literal(host)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        if ip is not None:
            if any(str(a) == ip for a in san.get_values_for_type(x509.IPAddress)):
                return None
        elif any(match_partner(n, host) for n in san.get_values_for_type(x509.DNSName)):
            return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or not names[0].value:
        return f"TLS unable to verify server {host}: certificate contains no valid commonName"
    common = str(names[0].value)
    if match_partner(common, ip or host):
        return None
    safe = "".join(ch if 33 <= ord(ch) <= 126 else "?" for ch in common)
    return f"TLS unable to verify server {host}: received certificate for {safe}"


__all__ = ["TLSPolicy", "VerifyingCreator", "tls_policy", "match_partner", "name_mismatch"]
