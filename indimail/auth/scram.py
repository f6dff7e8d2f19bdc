"""The SCRAM server message exchange (RFC 5802 §5–7, RFC 7677, RFC 9266).

Pure logic: :class:`ScramServer` parses and builds messages; the proof is
checked through ``twisted.cred`` with the :class:`ScramCredentials` it
returns, so a checker holding only StoredKey/ServerKey can verify it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Callable

from indimail.auth.credentials import ScramCredentials
from indimail.auth.schemes import ScramSecrets

MECHANISM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}


class ScramError(Exception):
    """A failed exchange; ``auth`` is True for authentication (not syntax) errors."""

    def __init__(self, text: str, auth: bool = False):
        super().__init__(text)
        self.auth = auth


def decoy_secrets(hashname: str, seed: bytes) -> ScramSecrets:
    """Keys no password matches, for unknown users."""
    size = hashlib.new(hashname).digest_size
    return ScramSecrets(hashname, 4096, seed[:16],
                        hashlib.new(hashname, seed + b"s").digest()[:size],
                        hashlib.new(hashname, seed + b"k").digest()[:size])


def _saslname(value: bytes) -> bytes:
    if b"," in value or re_bad_escape(value):
        raise ScramError("bad saslname")
    return value.replace(b"=2C", b",").replace(b"=3D", b"=")


def re_bad_escape(value: bytes) -> bool:
    i = value.find(b"=")
    while i != -1:
        if value[i:i + 3] not in (b"=2C", b"=3D"):
            return True
        i = value.find(b"=", i + 1)
    return False


class ScramServer:
    """One SCRAM exchange, server side."""

    def __init__(self, hashname: str, plus: bool = False,
                 binding: tuple[str, bytes] | None = None,
                 plus_advertised: bool = False,
                 nonce: Callable[[], bytes] | None = None):
        self.hashname = hashname
        self.plus = plus
        self.binding = binding
        self.plus_advertised = plus_advertised
        self._nonce = nonce
        self.gs2_header = b""
        self.username = b""
        self.client_first_bare = b""
        self.server_first_msg = b""
        self.nonce = b""
        self.secrets: ScramSecrets | None = None

    def client_first(self, data: bytes) -> bytes:
        """Parse client-first-message; return the user name."""
        parts = data.split(b",", 2)
        if len(parts) != 3:
            raise ScramError("bad client-first-message")
        cbflag, authzid, bare = parts
        if cbflag.startswith(b"p="):
            if not self.plus:
                raise ScramError("channel binding not offered for this mechanism", auth=True)
            if self.binding is None or cbflag[2:].decode("ascii", "replace") != self.binding[0]:
                raise ScramError("unsupported channel binding type", auth=True)
        elif cbflag == b"y":
            if self.plus:
                raise ScramError("-PLUS mechanism requires channel binding", auth=True)
            if self.plus_advertised:
                raise ScramError("channel binding downgrade", auth=True)
        elif cbflag == b"n":
            if self.plus:
                raise ScramError("-PLUS mechanism requires channel binding", auth=True)
        else:
            raise ScramError("bad gs2-cbind-flag")
        if authzid and not authzid.startswith(b"a="):
            raise ScramError("bad authzid")
        if bare.startswith(b"m="):
            raise ScramError("mandatory extension not supported")
        attrs = bare.split(b",")
        if len(attrs) < 2 or not attrs[0].startswith(b"n=") or not attrs[1].startswith(b"r="):
            raise ScramError("bad client-first-message-bare")
        self.username = _saslname(attrs[0][2:])
        if not self.username or len(attrs[1]) < 3:
            raise ScramError("empty user or nonce")
        self.client_nonce = attrs[1][2:]
        self.gs2_header = cbflag + b"," + authzid + b","
        self.client_first_bare = bare
        return self.username

    def server_first(self, secrets: ScramSecrets) -> bytes:
        """Build server-first-message for the user's *secrets*."""
        self.secrets = secrets
        self.nonce = self.client_nonce + self._nonce()
        self.server_first_msg = b"r=%s,s=%s,i=%d" % (
            self.nonce, base64.b64encode(secrets.salt), secrets.iterations)
        return self.server_first_msg

    def client_final(self, data: bytes) -> tuple[ScramCredentials, bytes]:
        """Check client-final-message; return the credentials to verify and server-final."""
        without_proof, sep, proof_b64 = data.rpartition(b",p=")
        if not sep:
            raise ScramError("no proof")
        attrs = without_proof.split(b",")
        if len(attrs) < 2 or not attrs[0].startswith(b"c=") or not attrs[1].startswith(b"r="):
            raise ScramError("bad client-final-message")
        try:
            cbind = base64.b64decode(attrs[0][2:], validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ScramError("bad base64 in client-final-message") from None
        expected = self.gs2_header
        if self.gs2_header.startswith(b"p="):
            expected += self.binding[1]
        if not hmac.compare_digest(cbind, expected):
            raise ScramError("channel binding mismatch", auth=True)
        if attrs[1][2:] != self.nonce:
            raise ScramError("nonce mismatch", auth=True)
        auth_message = self.client_first_bare + b"," + self.server_first_msg + b"," + without_proof
        creds = ScramCredentials(self.username, self.hashname, auth_message, proof)
        signature = hmac.new(self.secrets.server_key, auth_message, self.hashname).digest()
        return creds, b"v=" + base64.b64encode(signature)
