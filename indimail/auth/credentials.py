"""``twisted.cred`` credentials for the SASL mechanisms.

PLAIN and LOGIN use Twisted's own :class:`IUsernamePassword`. Challenge-
response mechanisms carry what the client sent and verify it against a
clear-text secret; SCRAM carries the proof and verifies it against stored
keys, so the password never has to be stored in clear.
"""

from __future__ import annotations

import hashlib
import hmac

from twisted.cred.credentials import ICredentials, IUsernamePassword, UsernamePassword
from zope.interface import Attribute, Interface, implementer

from indimail.auth.schemes import ScramSecrets

__all__ = ["IUsernamePassword", "UsernamePassword", "ICramCredentials",
           "CramCredentials", "IDigestMD5Credentials", "DigestMD5Credentials",
           "IScramCredentials", "ScramCredentials", "IScramSecretSource",
           "AUTH_METHOD_NUMBERS"]

# libqmail's authmethods.h: the number qmail-smtpd appends on fd 3.
AUTH_METHOD_NUMBERS = {
    "LOGIN": 1, "PLAIN": 2, "CRAM-MD5": 3, "CRAM-SHA1": 4, "CRAM-SHA224": 5,
    "CRAM-SHA256": 6, "CRAM-SHA384": 7, "CRAM-SHA512": 8, "CRAM-RIPEMD": 9,
    "DIGEST-MD5": 10, "SCRAM-SHA-1": 11, "SCRAM-SHA-256": 12,
    "SCRAM-SHA-1-PLUS": 14, "SCRAM-SHA-256-PLUS": 15,
}


class ICramCredentials(ICredentials):
    """A CRAM-* answer: HMAC(secret, challenge) in hex."""

    username = Attribute("bytes: the user name the client gave")
    challenge = Attribute("bytes: the challenge the server sent")
    response = Attribute("bytes: the hex digest the client sent")
    mechanism = Attribute("str: e.g. 'CRAM-MD5'")

    def checkSecret(secret: bytes) -> bool:
        """Whether the response matches the clear-text *secret*."""


@implementer(ICramCredentials)
class CramCredentials:
    """CRAM-MD5/SHA*/RIPEMD response (RFC 2195 generalised to other hashes)."""

    def __init__(self, username: bytes, challenge: bytes, response: bytes,
                 mechanism: str, hashname: str):
        self.username = username
        self.challenge = challenge
        self.response = response
        self.mechanism = mechanism
        self.hashname = hashname

    def checkSecret(self, secret: bytes) -> bool:
        expected = hmac.new(secret, self.challenge, self.hashname).hexdigest()
        return hmac.compare_digest(expected.encode("ascii"), self.response.lower())


class IDigestMD5Credentials(ICredentials):
    """A DIGEST-MD5 digest-response (RFC 2831, qop=auth)."""

    username = Attribute("bytes: the username directive")
    response = Attribute("bytes: the 32 hex digit response directive")
    fields = Attribute("dict[str, bytes]: realm, nonce, cnonce, nc, qop, digest-uri, authzid")
    rspauth = Attribute("bytes or None: set by the checker on success")

    def checkSecret(secret: bytes) -> bool:
        """Whether the response matches *secret*; sets ``rspauth`` when it does."""


def _h(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def _hex(data: bytes) -> bytes:
    return hashlib.md5(data).hexdigest().encode("ascii")


@implementer(IDigestMD5Credentials)
class DigestMD5Credentials:
    """RFC 2831 §2.1.2.1 response-value computation, server side."""

    def __init__(self, username: bytes, response: bytes, fields: dict[str, bytes]):
        self.username = username
        self.response = response
        self.fields = fields
        self.rspauth: bytes | None = None

    def _value(self, secret: bytes, a2_prefix: bytes) -> bytes:
        f = self.fields
        a1 = (_h(self.username + b":" + f.get("realm", b"") + b":" + secret)
              + b":" + f["nonce"] + b":" + f["cnonce"])
        if f.get("authzid"):
            a1 += b":" + f["authzid"]
        a2 = a2_prefix + b":" + f["digest-uri"]
        return _hex(_hex(a1) + b":" + f["nonce"] + b":" + f["nc"] + b":"
                    + f["cnonce"] + b":" + f["qop"] + b":" + _hex(a2))

    def checkSecret(self, secret: bytes) -> bool:
        if not hmac.compare_digest(self._value(secret, b"AUTHENTICATE"),
                                   self.response.lower()):
            return False
        self.rspauth = self._value(secret, b"")
        return True

    def checkpassword_data(self) -> bytes:
        """The newline-separated directives qmail-smtpd passes on fd 3."""
        f = self.fields
        return b"\n".join(k.encode() + b"=" + f.get(k, b"") for k in
                          ("digest-uri", "nc", "nonce", "cnonce", "qop", "realm"))


class IScramSecretSource(Interface):
    """Something that can hand out a user's SCRAM secrets (a checker usually)."""

    def scramSecrets(username: bytes, hashname: str):
        """Deferred firing with :class:`ScramSecrets` or None when the user has none."""


class IScramCredentials(ICredentials):
    """A SCRAM client proof, checked against stored keys (RFC 5802 §3)."""

    username = Attribute("bytes")
    hashname = Attribute("str: hashlib name")

    def checkSecrets(secrets: ScramSecrets) -> bool:
        """Whether the proof is valid for *secrets*."""


@implementer(IScramCredentials)
class ScramCredentials:
    """ClientProof over AuthMessage: H(ClientProof XOR ClientSignature) == StoredKey."""

    def __init__(self, username: bytes, hashname: str, auth_message: bytes, proof: bytes):
        self.username = username
        self.hashname = hashname
        self.auth_message = auth_message
        self.proof = proof

    def checkSecrets(self, secrets: ScramSecrets) -> bool:
        if secrets.hashname != self.hashname:
            return False
        signature = hmac.new(secrets.stored_key, self.auth_message, self.hashname).digest()
        if len(signature) != len(self.proof):
            return False
        client_key = bytes(a ^ b for a, b in zip(self.proof, signature))
        return hmac.compare_digest(hashlib.new(self.hashname, client_key).digest(),
                                   secrets.stored_key)
