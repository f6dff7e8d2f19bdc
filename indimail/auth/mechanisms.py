"""Server-side SASL mechanisms: PLAIN, LOGIN, CRAM-*, DIGEST-MD5, SCRAM(-PLUS).

Each mechanism object serves one AUTH exchange. The protocol calls
``start(initial)`` (the decoded initial response, or None when the client
sent none) and then ``respond(data)`` for each decoded client line; both
return Deferreds firing with :class:`~indimail.auth.sasl.Challenge`,
:class:`~indimail.auth.sasl.Success` or :class:`~indimail.auth.sasl.AuthFailed`.
Verification goes through the ``twisted.cred`` portal in the
:class:`AuthContext`.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets as _secrets
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from twisted.cred import error as cred_error
from twisted.internet import defer

from indimail.auth import scram
from indimail.auth.credentials import CramCredentials, DigestMD5Credentials, UsernamePassword
from indimail.auth.realm import IAuthenticatedUser
from indimail.auth.sasl import (BAD_CREDENTIALS, MALFORMED, TEMP_FAILURE,
                                AuthFailed, Challenge, Success)
from indimail.fastlog import Logger

log = Logger()

# Per-process key: unknown SCRAM users get a stable, unguessable decoy salt.
_DECOY_KEY = os.urandom(32)

CRAM_HASHES = {
    "CRAM-MD5": "md5", "CRAM-SHA1": "sha1", "CRAM-SHA224": "sha224",
    "CRAM-SHA256": "sha256", "CRAM-SHA384": "sha384", "CRAM-SHA512": "sha512",
    "CRAM-RIPEMD": "ripemd160",
}


def _default_nonce() -> bytes:
    return _secrets.token_urlsafe(18).encode("ascii")


@dataclass
class AuthContext:
    """What a mechanism needs from its session.

    ``channel_binding`` returns ``(cb_type, data)`` for the session's TLS
    connection, or None without TLS (see :mod:`indimail.auth.channelbinding`).
    ``plus_advertised`` tells SCRAM whether the server offered the -PLUS
    variants (a client flag ``y`` then means a downgrade). ``session_env``
    (e.g. TCPREMOTEIP, TCPLOCALPORT) travels on the credentials as
    ``session_env`` for checkers that run programs.
    """

    portal: object
    hostname: str
    scram_source: object | None = None
    channel_binding: Callable[[], tuple[str, bytes] | None] | None = None
    plus_advertised: bool = False
    now: Callable[[], float] = time.time
    nonce: Callable[[], bytes] = _default_nonce
    session_env: Mapping[str, str] | None = None


class SaslUsernamePassword(UsernamePassword):
    """A user/password pair that remembers whether PLAIN or LOGIN carried it."""

    def __init__(self, username: bytes, password: bytes, mechanism: str):
        super().__init__(username, password)
        self.mechanism = mechanism


class Mechanism:
    """One exchange of one mechanism; subclasses implement ``_start``/``_respond``."""

    name = ""

    def __init__(self, ctx: AuthContext):
        self.ctx = ctx
        self.finished = False

    def start(self, initial: bytes | None) -> defer.Deferred:
        return self._run(self._start(initial))

    def respond(self, data: bytes) -> defer.Deferred:
        if self.finished:
            return defer.succeed(MALFORMED)
        return self._run(self._respond(data))

    def _run(self, coro) -> defer.Deferred:
        async def guarded():
            try:
                result = await coro
            except Exception:
                log.failure("AUTH {mech} failed unexpectedly", mech=self.name)
                result = TEMP_FAILURE
            if not isinstance(result, Challenge):
                self.finished = True
            return result
        return defer.ensureDeferred(guarded())

    async def _start(self, initial):
        raise cred_error.LoginFailed("abstract mechanism")

    async def _respond(self, data):
        raise cred_error.LoginFailed("abstract mechanism")

    async def login(self, credentials):
        """Log *credentials* in through the portal; map failures to replies."""
        credentials.session_env = self.ctx.session_env
        try:
            _iface, avatar, _logout = await self.ctx.portal.login(
                credentials, None, IAuthenticatedUser)
        except cred_error.UnauthorizedLogin:
            return BAD_CREDENTIALS
        except cred_error.LoginFailed as e:
            reply = getattr(e, "smtp_reply", None)
            return AuthFailed(*reply) if reply else TEMP_FAILURE
        return Success(avatar, self.name)


class Plain(Mechanism):
    """RFC 4616: ``authzid \\0 authcid \\0 passwd``; 334 with empty challenge first."""

    name = "PLAIN"

    async def _start(self, initial):
        if initial is None:
            return Challenge(b"")
        return await self._respond(initial)

    async def _respond(self, data):
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            return MALFORMED
        _authzid, user, password = parts
        return await self.login(SaslUsernamePassword(user, password, self.name))


class Login(Mechanism):
    """The LOGIN mechanism: ``Username:`` then ``Password:`` prompts."""

    name = "LOGIN"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.user: bytes | None = None

    async def _start(self, initial):
        if initial:
            self.user = initial
            return Challenge(b"Password:")
        return Challenge(b"Username:")

    async def _respond(self, data):
        if self.user is None:
            if not data:
                return MALFORMED
            self.user = data
            return Challenge(b"Password:")
        if not data or b"\0" in data or b"\0" in self.user:
            return MALFORMED
        return await self.login(SaslUsernamePassword(self.user, data, self.name))


class Cram(Mechanism):
    """CRAM-MD5 (RFC 2195) and IndiMail's CRAM-SHA*/RIPEMD variants."""

    def __init__(self, ctx, name: str):
        super().__init__(ctx)
        self.name = name
        self.hashname = CRAM_HASHES[name]
        self.challenge = b""

    async def _start(self, initial):
        if initial:
            return MALFORMED
        digits = int.from_bytes(self.ctx.nonce()[:6].ljust(6, b"0"), "big") % 10**9
        self.challenge = b"<%d.%d@%s>" % (digits, int(self.ctx.now()),
                                          self.ctx.hostname.encode("utf-8"))
        return Challenge(self.challenge)

    async def _respond(self, data):
        user, sep, digest = data.rpartition(b" ")
        user = user.strip()
        if not sep or not user or b"\0" in user or not re.fullmatch(rb"[0-9a-fA-F]+", digest):
            return MALFORMED
        return await self.login(CramCredentials(user, self.challenge, digest,
                                                self.name, self.hashname))


_DIRECTIVE = re.compile(rb'\s*([A-Za-z0-9-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')


def parse_directives(data: bytes) -> dict[str, bytes]:
    """RFC 2831 ``key=value`` / ``key="quoted"`` list; raises ValueError when malformed."""
    out: dict[str, bytes] = {}
    pos = 0
    data = data.strip()
    while pos < len(data):
        m = _DIRECTIVE.match(data, pos)
        if not m or m.end() == pos:
            raise ValueError("bad directive list")
        key, value = m.group(1).decode("ascii").lower(), m.group(2).strip()
        if value.startswith(b'"'):
            value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
        if key in out:
            raise ValueError(f"directive {key} repeated")
        out[key] = value
        pos = m.end()
    return out


class DigestMD5(Mechanism):
    """RFC 2831 with qop=auth; the final ``rspauth`` is a challenge to acknowledge."""

    name = "DIGEST-MD5"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.nonce = b""
        self.state = "challenge"
        self.realm = ctx.hostname.encode("utf-8")

    async def _start(self, initial):
        if initial:
            return MALFORMED
        self.nonce = self.ctx.nonce()
        self.state = "response"
        return Challenge(b'realm="%s",nonce="%s",qop="auth",charset=utf-8,'
                         b'algorithm=md5-sess' % (self.realm, self.nonce))

    async def _respond(self, data):
        if self.state == "rspauth":
            return self.success
        try:
            d = parse_directives(data)
        except ValueError:
            return MALFORMED
        needed = ("username", "nonce", "cnonce", "nc", "digest-uri", "response")
        if any(k not in d for k in needed) or any(
                b"\0" in v or b"\n" in v for v in d.values()):
            return MALFORMED
        if (d["nonce"] != self.nonce or d["nc"].lower() != b"00000001"
                or d.get("qop", b"auth").lower() != b"auth"
                or not re.fullmatch(rb"[0-9a-fA-F]{32}", d["response"])):
            return MALFORMED
        fields = {k: d[k] for k in ("nonce", "cnonce", "nc", "digest-uri")}
        fields.update(qop=b"auth", realm=d.get("realm", b""))
        if d.get("authzid"):
            fields["authzid"] = d["authzid"]
        creds = DigestMD5Credentials(d["username"], d["response"], fields)
        result = await self.login(creds)
        if not isinstance(result, Success):
            return result
        if not creds.rspauth:
            return TEMP_FAILURE
        self.success = result
        self.state = "rspauth"
        return Challenge(b"rspauth=" + creds.rspauth)


class Scram(Mechanism):
    """SCRAM-SHA-1/-256 and their -PLUS variants (RFC 5802, 7677, 5929, 9266)."""

    def __init__(self, ctx, name: str):
        super().__init__(ctx)
        self.name = name
        self.plus = name.endswith("-PLUS")
        self.hashname = scram.MECHANISM_HASHES[name.removesuffix("-PLUS")]
        self.server: scram.ScramServer | None = None
        self.success: Success | None = None

    async def _start(self, initial):
        if initial is None:
            return Challenge(b"")
        return await self._first(initial)

    async def _respond(self, data):
        if self.server is None:
            return await self._first(data)
        if self.success is not None:
            return self.success if not data else MALFORMED
        try:
            creds, server_final = self.server.client_final(data)
        except scram.ScramError as e:
            log.info("SCRAM {mech}: {err}", mech=self.name, err=e)
            return AuthFailed(535, "5.7.8", str(e)) if e.auth else MALFORMED
        result = await self.login(creds)
        if not isinstance(result, Success):
            return result
        self.success = result
        return Challenge(server_final)

    async def _first(self, data):
        binding = self.ctx.channel_binding() if self.ctx.channel_binding else None
        self.server = scram.ScramServer(
            self.hashname, plus=self.plus, binding=binding,
            plus_advertised=self.ctx.plus_advertised, nonce=self.ctx.nonce)
        try:
            username = self.server.client_first(data)
        except scram.ScramError as e:
            log.info("SCRAM {mech}: {err}", mech=self.name, err=e)
            return AuthFailed(535, "5.7.8", str(e)) if e.auth else MALFORMED
        source = self.ctx.scram_source
        secrets = None
        if source is not None:
            try:
                secrets = await source.scramSecrets(username, self.hashname)
            except cred_error.LoginFailed:
                secrets = None
        if secrets is None:
            # Carry on with made-up keys so the user's existence does not leak.
            seed = hmac.new(_DECOY_KEY, username, "sha256").digest()
            secrets = scram.decoy_secrets(self.hashname, seed)
        return Challenge(self.server.server_first(secrets))


MECHANISM_NAMES = ("LOGIN", "PLAIN", *CRAM_HASHES, "DIGEST-MD5", "SCRAM-SHA-1",
                   "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS")


def make_mechanism(name: str, ctx: AuthContext) -> Mechanism:
    """A fresh exchange of mechanism *name* (upper case, as advertised)."""
    name = name.upper()
    if name == "PLAIN":
        return Plain(ctx)
    if name == "LOGIN":
        return Login(ctx)
    if name in CRAM_HASHES:
        return Cram(ctx, name)
    if name == "DIGEST-MD5":
        return DigestMD5(ctx)
    if name in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"):
        return Scram(ctx, name)
    raise KeyError(name)
