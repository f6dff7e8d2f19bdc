"""Client side of SMTP AUTH for remote delivery (qmail-remote's ``smtp_auth``).

One object per exchange: :meth:`ClientMechanism.initial` gives the text
after ``AUTH <name>`` (None: send the bare command), :meth:`respond` turns
each ``334`` challenge (decoded) into the next line (bytes, base64-encoded
by the caller).  The mechanisms are the ones ``indimail/auth`` serves:
PLAIN, LOGIN, CRAM-* (the hash table is shared with the server side),
DIGEST-MD5 (RFC 2831, qop=auth) and SCRAM-SHA-1/-256 with their -PLUS
variants (RFC 5802, 7677; channel binding from
:mod:`indimail.auth.channelbinding`).  Key stretching (PBKDF2) runs through
the *thread* callable so the reactor never hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Awaitable, Callable

from indimail.auth.channelbinding import channel_binding
from indimail.auth.mechanisms import CRAM_HASHES, parse_directives
from indimail.auth.scram import MECHANISM_HASHES

# indimail-mta's qmail-remote, AUTH_SMTP empty: strongest first.
AUTH_PREFERENCE = (
    "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
    "DIGEST-MD5", "CRAM-RIPEMD", "CRAM-SHA512", "CRAM-SHA384", "CRAM-SHA256",
    "CRAM-SHA224", "CRAM-SHA1", "CRAM-MD5", "PLAIN", "LOGIN")

# The variables that take a mechanism out of the automatic choice.
DISABLE = {
    "LOGIN": "DISABLE_AUTH_LOGIN", "PLAIN": "DISABLE_AUTH_PLAIN",
    **{name: "DISABLE_" + name.replace("-", "_") for name in CRAM_HASHES},
    "DIGEST-MD5": "DISABLE_DIGEST_MD5",
    "SCRAM-SHA-1": "DISABLE_SCRAM_SHA1", "SCRAM-SHA-256": "DISABLE_SCRAM_SHA256",
    "SCRAM-SHA-1-PLUS": "DISABLE_SCRAM_SHA1_PLUS",
    "SCRAM-SHA-256-PLUS": "DISABLE_SCRAM_SHA256_PLUS",
}

Thread = Callable[..., Awaitable]


class SaslClientError(Exception):
    """The server's challenge or final message does not check out."""


def choose(offered: str, wanted: str, disabled=frozenset(), tls: bool = False) -> str | None:
    """The mechanism to use: *wanted* (AUTH_SMTP) when named and offered,
    with *wanted* empty the first of :data:`AUTH_PREFERENCE` offered and not
    *disabled*.  -PLUS variants need TLS (qmail-remote's ``ssl &&``)."""
    mechs = {m.upper() for m in offered.split()}
    if not tls:
        mechs = {m for m in mechs if not m.endswith("-PLUS")}
    if wanted:
        wanted = wanted.upper()
        return wanted if wanted in mechs and wanted in AUTH_PREFERENCE else None
    for mech in AUTH_PREFERENCE:
        if mech in mechs and mech not in disabled:
            return mech
    return None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ClientMechanism:
    """One AUTH exchange, client side."""

    name = ""
    label = "AUTH"      # qmail-remote's word for the step in its error text

    def __init__(self, user: str, password: str):
        self.user = user.encode("utf-8")
        self.password = password.encode("utf-8")

    def initial(self) -> bytes | None:
        return None

    async def respond(self, challenge: bytes, thread: Thread) -> bytes:
        raise SaslClientError("unexpected challenge")

    def done(self) -> bool:
        """Whether the server's 235 may come now (SCRAM checks its signature)."""
        return True


class Plain(ClientMechanism):
    """RFC 4616 with an empty authorisation identity."""

    name, label = "PLAIN", "plain"

    async def respond(self, challenge, thread):
        return b"\0" + self.user + b"\0" + self.password


class Login(ClientMechanism):
    name = "LOGIN"

    def __init__(self, user, password):
        super().__init__(user, password)
        self.step = 0

    async def respond(self, challenge, thread):
        self.step += 1
        self.label = "username" if self.step == 1 else "password"
        return self.user if self.step == 1 else self.password


class Cram(ClientMechanism):
    """CRAM-MD5 (RFC 2195) and IndiMail's CRAM-SHA*/RIPEMD: user, space,
    hex HMAC of the challenge keyed with the password."""

    label = "username+digest"

    def __init__(self, name, user, password):
        super().__init__(user, password)
        self.name = name

    async def respond(self, challenge, thread):
        digest = hmac.new(self.password, challenge, CRAM_HASHES[self.name]).hexdigest()
        return self.user + b" " + digest.encode("ascii")


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def _hexmd5(data: bytes) -> bytes:
    return hashlib.md5(data).hexdigest().encode("ascii")


class DigestMD5(ClientMechanism):
    """RFC 2831, qop=auth; digest-uri ``smtp/<address>`` as qmail-remote
    sends it; the realm is control ``realm`` or else the server's."""

    name, label = "DIGEST-MD5", "username+digest"

    def __init__(self, user, password, host: str, realm: str | None = None,
                 cnonce: Callable[[], bytes] | None = None):
        super().__init__(user, password)
        self.host, self.realm = host, realm
        self.cnonce = cnonce or (lambda: os.urandom(16).hex().encode("ascii"))
        self.expected: bytes | None = None
        self.verified = False

    def _value(self, fields: dict[str, bytes], prefix: bytes) -> bytes:
        a1 = (_md5(self.user + b":" + fields["realm"] + b":" + self.password)
              + b":" + fields["nonce"] + b":" + fields["cnonce"])
        a2 = prefix + b":" + fields["digest-uri"]
        return _hexmd5(_hexmd5(a1) + b":" + fields["nonce"] + b":" + fields["nc"] + b":"
                       + fields["cnonce"] + b":" + fields["qop"] + b":" + _hexmd5(a2))

    async def respond(self, challenge, thread):
        try:
            directives = parse_directives(challenge)
        except ValueError:
            raise SaslClientError("bad DIGEST-MD5 challenge") from None
        if "rspauth" in directives:
            if self.expected is None or not hmac.compare_digest(directives["rspauth"],
                                                                self.expected):
                raise SaslClientError("DIGEST-MD5 server response does not match")
            self.verified = True
            return b""
        if "nonce" not in directives:
            raise SaslClientError("no nonce in DIGEST-MD5 challenge")
        realm = (self.realm.encode("utf-8") if self.realm is not None
                 else directives.get("realm", b""))
        fields = {"realm": realm, "nonce": directives["nonce"], "cnonce": self.cnonce(),
                  "nc": b"00000001", "qop": b"auth",
                  "digest-uri": b"smtp/" + self.host.encode("ascii")}
        response = self._value(fields, b"AUTHENTICATE")
        self.expected = self._value(fields, b"")
        q = lambda v: b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        return (b"charset=utf-8,username=" + q(self.user) + b",realm=" + q(realm)
                + b",nonce=" + q(fields["nonce"]) + b",nc=00000001,cnonce="
                + q(fields["cnonce"]) + b",digest-uri=" + q(fields["digest-uri"])
                + b",response=" + response + b",qop=auth")

    def done(self):
        return self.verified


def _saslname(value: bytes) -> bytes:
    return value.replace(b"=", b"=3D").replace(b",", b"=2C")


class Scram(ClientMechanism):
    """SCRAM client (RFC 5802): client-first with ``n,,`` (or ``p=<type>,,``
    for -PLUS over TLS), the proof, then the server's signature checked."""

    label = "client proof"

    def __init__(self, name, user, password, binding: tuple[str, bytes] | None = None,
                 nonce: Callable[[], bytes] | None = None):
        super().__init__(user, password)
        self.name = name
        self.hashname = MECHANISM_HASHES[name.removesuffix("-PLUS")]
        self.plus = name.endswith("-PLUS")
        if self.plus and binding is None:
            raise SaslClientError("no channel binding data for " + name)
        self.binding = binding if self.plus else None
        self.nonce = (nonce or (lambda: base64.b64encode(os.urandom(18))))()
        self.gs2 = (b"p=" + binding[0].encode("ascii") + b",,") if self.plus else b"n,,"
        self.first_bare = b"n=" + _saslname(self.user) + b",r=" + self.nonce
        self.server_signature: bytes | None = None
        self.verified = False

    def initial(self):
        return self.gs2 + self.first_bare

    async def respond(self, challenge, thread):
        if self.server_signature is not None:
            return self._final(challenge)
        attrs = dict(part.split(b"=", 1) for part in challenge.split(b",") if b"=" in part)
        try:
            nonce, salt, iterations = attrs[b"r"], base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
        except (KeyError, ValueError):
            raise SaslClientError("bad SCRAM server-first-message") from None
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce) or iterations < 1:
            raise SaslClientError("bad SCRAM server nonce")
        salted = await thread(hashlib.pbkdf2_hmac, self.hashname, self.password, salt,
                              iterations)
        client_key = hmac.new(salted, b"Client Key", self.hashname).digest()
        stored_key = hashlib.new(self.hashname, client_key).digest()
        cbind = self.gs2 + (self.binding[1] if self.binding else b"")
        without_proof = b"c=" + base64.b64encode(cbind) + b",r=" + nonce
        auth_message = self.first_bare + b"," + challenge + b"," + without_proof
        signature = hmac.new(stored_key, auth_message, self.hashname).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hashname).digest()
        self.server_signature = hmac.new(server_key, auth_message, self.hashname).digest()
        return without_proof + b",p=" + base64.b64encode(proof)

    def _final(self, challenge: bytes) -> bytes:
        self.check_final(challenge)
        return b""

    def check_final(self, message: bytes) -> None:
        """Check server-final-message (``v=``); raises on a bad signature."""
        if not message.startswith(b"v="):
            raise SaslClientError("SCRAM server error: " + message.decode("ascii", "replace"))
        try:
            got = base64.b64decode(message[2:])
        except ValueError:
            raise SaslClientError("bad SCRAM server-final-message") from None
        if self.server_signature is None or not hmac.compare_digest(got, self.server_signature):
            raise SaslClientError("SCRAM server signature does not verify")
        self.verified = True

    def done(self):
        return self.verified


def transport_binding(transport) -> tuple[str, bytes] | None:
    """Channel-binding data of a client TLS transport (None without TLS)."""
    conn = getattr(transport, "getHandle", lambda: None)()
    if conn is None or not hasattr(conn, "export_keying_material"):
        return None
    return channel_binding(conn, server=False)


def make_client(name: str, user: str, password: str, *, host: str = "",
                realm: str | None = None, binding=None) -> ClientMechanism:
    """A fresh client exchange for mechanism *name*."""
    if name == "PLAIN":
        return Plain(user, password)
    if name == "LOGIN":
        return Login(user, password)
    if name in CRAM_HASHES:
        return Cram(name, user, password)
    if name == "DIGEST-MD5":
        return DigestMD5(user, password, host, realm)
    if name.removesuffix("-PLUS") in MECHANISM_HASHES:
        return Scram(name, user, password, binding)
    raise KeyError(name)
