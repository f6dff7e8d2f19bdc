"""Password schemes as IndiMail stores them, and their (blocking) verification.

Stored forms understood:

* crypt(3) hashes: ``$1$`` (MD5-crypt), ``$5$`` (SHA-256), ``$6$`` (SHA-512),
  and whatever else the platform's crypt(3) knows;
* ``{CRAM}clear`` – the clear-text password (what IndiMail's ``ENABLE_CRAM``
  mode keeps), usable by every mechanism;
* ``{SCRAM-SHA-1}`` / ``{SCRAM-SHA-256}`` as written by ``vpasswd -m``:
  ``iter,salt,stored-key,server-key[:hex-salted-password:clear],crypt-hash``
  (``gsasl --mkpasswd`` output, without the crypt part, is accepted too).

Verification functions are CPU-bound (PBKDF2, crypt): callers run them off
the reactor thread (:func:`indimail.auth.checkers` does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from . import cryptr

SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
DEFAULT_ITERATIONS = 4096


class SchemeError(ValueError):
    """A stored password that cannot be parsed."""


@dataclass(frozen=True)
class ScramSecrets:
    """What a SCRAM server needs for one user (RFC 5802 §3)."""

    hashname: str          # hashlib name: "sha1" or "sha256"
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True)
class StoredPassword:
    """A parsed stored password: what each mechanism family can use."""

    crypt_hash: str | None = None
    cleartext: bytes | None = None
    scram: ScramSecrets | None = None

    def can_verify_plain(self) -> bool:
        """PLAIN/LOGIN need any verifier."""
        return bool(self.crypt_hash or self.cleartext is not None or self.scram)

    def can_verify_cram(self) -> bool:
        """CRAM-* and DIGEST-MD5 need the clear text."""
        return self.cleartext is not None

    def scram_hashes(self) -> set[str]:
        """The SCRAM hash names this entry serves (clear text serves all)."""
        if self.cleartext is not None:
            return set(SCRAM_HASHES.values())
        return {self.scram.hashname} if self.scram else set()


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as e:
        raise SchemeError(f"bad base64 {text!r}") from e


def parse_stored(value: str) -> StoredPassword:
    """Parse one stored password (see the module docstring for the forms)."""
    if value.startswith("{CRAM}"):
        return StoredPassword(cleartext=value[6:].encode("utf-8"))
    for prefix, hashname in SCRAM_HASHES.items():
        tag = "{" + prefix + "}"
        if value.startswith(tag):
            return _parse_scram(value[len(tag):], hashname)
    if value.startswith("{"):
        raise SchemeError(f"unknown scheme {value.split('}')[0]}}}")
    if not value:
        raise SchemeError("empty password")
    return StoredPassword(crypt_hash=value)


def _parse_scram(body: str, hashname: str) -> StoredPassword:
    parts = body.split(",", 3)
    if len(parts) != 4:
        raise SchemeError("SCRAM entry needs iter,salt,stored-key,server-key")
    iter_s, salt_s, stored_s, rest = parts
    mid, sep, crypt_hash = rest.rpartition(",")
    if not sep:
        mid, crypt_hash = rest, ""
    server_s, _, tail = mid.partition(":")
    cleartext = None
    if tail:
        _hexsalted, _, clear = tail.partition(":")
        if clear:
            cleartext = clear.encode("utf-8")
    if re.fullmatch(r"[0-9a-f]+", crypt_hash) and len(crypt_hash) == 2 * hashlib.new(hashname).digest_size:
        crypt_hash = ""  # gsasl --mkpasswd --verbose appends the hex salted password here
    try:
        iterations = int(iter_s)
    except ValueError as e:
        raise SchemeError(f"bad iteration count {iter_s!r}") from e
    secrets = ScramSecrets(hashname, iterations, _b64(salt_s), _b64(stored_s),
                           _b64(server_s))
    return StoredPassword(crypt_hash=crypt_hash or None, cleartext=cleartext,
                          scram=secrets)


def scram_secrets_from_password(password: bytes, hashname: str, salt: bytes,
                                iterations: int = DEFAULT_ITERATIONS) -> ScramSecrets:
    """Derive StoredKey/ServerKey from a password (RFC 5802 §3)."""
    salted = hashlib.pbkdf2_hmac(hashname, password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashname).digest()
    return ScramSecrets(hashname, iterations, salt,
                        hashlib.new(hashname, client_key).digest(),
                        hmac.new(salted, b"Server Key", hashname).digest())


def format_scram(secrets: ScramSecrets, crypt_hash: str,
                 cleartext: bytes | None = None) -> str:
    """The ``{SCRAM-SHA-…}`` stored form ``vpasswd -m`` writes (``-C`` keeps clear text)."""
    name = {v: k for k, v in SCRAM_HASHES.items()}[secrets.hashname]
    enc = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    server = enc(secrets.server_key)
    if cleartext is not None:
        salted = hashlib.pbkdf2_hmac(secrets.hashname, cleartext, secrets.salt,
                                     secrets.iterations)
        server += ":" + salted.hex() + ":" + cleartext.decode("utf-8")
    return (f"{{{name}}}{secrets.iterations},{enc(secrets.salt)},"
            f"{enc(secrets.stored_key)},{server},{crypt_hash}")


def crypt_password(password: bytes, salt: str) -> str:
    """crypt(3) of *password* with *salt* (``$5$…``, ``$6$…``, ``$1$…``)."""
    result = cryptr.crypt(password, salt)   # without the GIL: see indimail.auth.cryptr
    if not result or result.startswith("*"):
        raise SchemeError(f"crypt(3) does not support salt {salt!r}")
    return result


def verify_plain(stored: StoredPassword, password: bytes) -> bool:
    """Check a clear password given by PLAIN/LOGIN against *stored* (blocking)."""
    if stored.cleartext is not None:
        return hmac.compare_digest(stored.cleartext, password)
    if stored.crypt_hash:
        try:
            got = crypt_password(password, stored.crypt_hash)
        except (SchemeError, UnicodeError):
            return False
        return hmac.compare_digest(got.encode(), stored.crypt_hash.encode())
    if stored.scram:
        s = stored.scram
        derived = scram_secrets_from_password(password, s.hashname, s.salt, s.iterations)
        return hmac.compare_digest(derived.stored_key, s.stored_key)
    return False


def hash_password(password: bytes, scheme: str = "SCRAM-SHA-256", *,
                  iterations: int = DEFAULT_ITERATIONS, keep_cleartext: bool = False,
                  randbytes=os.urandom) -> str:
    """A stored form for a new password (what ``vpasswd -m`` / ``-C`` would write).

    *scheme* is ``SCRAM-SHA-1``, ``SCRAM-SHA-256`` (both with a ``$5$`` crypt
    part for PLAIN/LOGIN), ``SHA512-CRYPT``, ``SHA256-CRYPT`` or ``CRAM``.
    """
    salt_chars = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    crypt_salt = "".join(salt_chars[b % 64] for b in randbytes(16))
    if scheme == "CRAM":
        return "{CRAM}" + password.decode("utf-8")
    if scheme == "SHA512-CRYPT":
        return crypt_password(password, "$6$" + crypt_salt)
    if scheme == "SHA256-CRYPT":
        return crypt_password(password, "$5$" + crypt_salt)
    if scheme in SCRAM_HASHES:
        secrets = scram_secrets_from_password(password, SCRAM_HASHES[scheme],
                                              randbytes(12), iterations)
        return format_scram(secrets, crypt_password(password, "$5$" + crypt_salt),
                            password if keep_cleartext else None)
    raise SchemeError(f"unknown scheme {scheme}")
