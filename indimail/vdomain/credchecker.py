"""A ``twisted.cred`` checker over the virtual-domain store: vchkpass for SMTP AUTH.

It verifies every credential kind the SMTP service has (see
:mod:`indimail.auth.credentials`) against the user's ``pw_passwd`` as
``vpasswd`` stored it: PLAIN/LOGIN against the crypt hash (or the SCRAM
keys), SCRAM against the stored SCRAM keys, CRAM-* and DIGEST-MD5 against a
clear text that ``vpasswd -C`` kept.  The account rules are vchkpass's:

* ``NO_SMTP`` in pw_gid: refused, ``553 Sorry, this account cannot use SMTP``;
* an inactive user (``indibak``): refused with ``Sorry, this account is
  inactive`` unless ``ALLOW_INACTIVE`` is set;
* ``NO_RELAY``: authenticated, but the login does not grant relaying
  (vchkpass's exit 3);
* with ``DOMAIN_LIMITS`` set, an expired domain or password (vlimits) is
  refused.

A login without ``@`` (or with ``%``, Outlook's separator) takes the
domain from ``DEFAULT_DOMAIN``.  The store's queries run in its pool and
hashing in the reactor's thread pool: nothing blocks the reactor.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, threads
from zope.interface import implementer

from indimail.auth import schemes
from indimail.auth.checkers import scram_secrets_for, verify
from indimail.auth.credentials import (ICramCredentials, IDigestMD5Credentials,
                                       IScramCredentials, IScramSecretSource,
                                       IUsernamePassword)
from indimail.auth.realm import (CAP_CRAM, CAP_PLAIN, CAP_SCRAM_SHA1, CAP_SCRAM_SHA256,
                                 AvatarId)

from indimail.fastlog import Logger
from . import flags
from .records import VUser

log = Logger()

NO_SMTP_TEXT = "Sorry, this account cannot use SMTP"
INACTIVE_TEXT = "Sorry, this account is inactive"
DOMAIN_EXPIRED_TEXT = "Sorry, your domain has expired"
PASSWORD_EXPIRED_TEXT = "Sorry, your password has expired"


class AccountRefused(error.LoginFailed):
    """The password was right but the account may not log in here (553, 5.7.1)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.smtp_reply = (553, "5.7.1", text)


class StoreUnavailable(error.LoginFailed):
    """The database could not be asked: answer 454, never 535."""

    smtp_reply = (454, "4.3.0", "temporary authentication failure")


def login_address(login: str, env: Mapping[str, str]) -> str | None:
    """``user@domain`` for a login; ``user%domain`` and a bare ``user`` (with
    ``DEFAULT_DOMAIN``) are completed as vchkpass does.  None: no domain known."""
    login = login.strip()
    if "@" not in login and "%" in login:
        login = login.replace("%", "@", 1)
    if "@" in login:
        name, _, domain = login.rpartition("@")
        return f"{name}@{domain}" if name and domain else None
    domain = (env.get("DEFAULT_DOMAIN") or "").strip()
    return f"{login}@{domain}" if login and domain else None


def parse_password(user: VUser) -> schemes.StoredPassword | None:
    """The user's stored password, or None when it is empty or unreadable."""
    try:
        return schemes.parse_stored(user.pw_passwd)
    except schemes.SchemeError:
        return None


def refusal(user: VUser, env: Mapping[str, str], service: str = "smtp") -> str | None:
    """Why *user* (whose password was right) may not use *service*, or None.

    For ``smtp`` that is NO_SMTP; for ``pop3``/``imap`` (Dovecot through
    vchkpass) NO_POP/NO_IMAP; inactive users need ``ALLOW_INACTIVE``."""
    service = service.lower()
    if service.startswith("pop"):
        if user.has(flags.NO_POP):
            return "Sorry, this account cannot use POP3"
    elif service.startswith("imap"):
        if user.has(flags.NO_IMAP):
            return "Sorry, this account cannot use IMAP"
    elif user.has(flags.NO_SMTP):
        return NO_SMTP_TEXT
    if user.inactive and "ALLOW_INACTIVE" not in env:
        return INACTIVE_TEXT
    return None


def expiry_refusal(limits, now: float) -> str | None:
    """vlimits' domain_expiry/passwd_expiry (epoch seconds, -1 never) at *now*."""
    if limits.domain_expiry > -1 and now > limits.domain_expiry:
        return DOMAIN_EXPIRED_TEXT
    if limits.passwd_expiry > -1 and now > limits.passwd_expiry:
        return PASSWORD_EXPIRED_TEXT
    return None


@implementer(ICredentialsChecker, IScramSecretSource)
class StoreChecker:
    """Checks SMTP AUTH credentials against the virtual users of a store.

    *store* is an opened :class:`~indimail.vdomain.store.VStore`, or a
    callable returning a Deferred that fires with one (opened on first use,
    so a service can build its portal before the database is reachable).
    *env* is the service environment; a credential's ``session_env`` (set
    by the SASL mechanism) is laid over it."""

    credentialInterfaces = (IUsernamePassword, ICramCredentials,
                            IDigestMD5Credentials, IScramCredentials)

    def __init__(self, store, reactor, env: Mapping[str, str] | None = None,
                 now: Callable[[], float] = time.time, service: str = "smtp"):
        self._store = store if callable(store) and not hasattr(store, "lookup") else None
        self._opened = None if self._store is not None else store
        self._lock = defer.DeferredLock()
        self._reactor = reactor
        self.env = dict(env or {})
        self.now = now
        self.service = service

    @classmethod
    def for_home(cls, home, env: Mapping[str, str], reactor) -> "StoreChecker":
        """A checker on the home's store (``host.mysql``/``MYSQL_HOST`` or SQLite),
        shared with every other user of :func:`shared_store`."""
        return cls(lambda: shared_store(home, env, reactor), reactor, env)

    def capabilities(self) -> set[str]:
        """All families: which one a user can use depends on their stored form."""
        return {CAP_PLAIN, CAP_CRAM, CAP_SCRAM_SHA1, CAP_SCRAM_SHA256}

    async def store(self):
        """The opened store (opened the first time; a failed open is retried)."""
        if self._opened is None:
            async with self._lock:
                if self._opened is None:
                    self._opened = await self._store()
        return self._opened

    def _thread(self, fn, *args):
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    def _env(self, credentials) -> dict[str, str]:
        env = dict(self.env)
        env.update(getattr(credentials, "session_env", None) or {})
        return env

    async def find(self, login: bytes, env: Mapping[str, str]) -> tuple[str, VUser] | None:
        """(address, user) for *login*, or None when there is no such user."""
        try:
            text = login.decode("utf-8")
        except UnicodeDecodeError:
            return None
        address = login_address(text, env)
        if address is None:
            return None
        try:
            store = await self.store()
            user = await store.lookup(address)
        except Exception as exc:
            log.failure("vchkpass: looking up {address}", address=address)
            raise StoreUnavailable(str(exc)) from exc
        return (address, user) if user is not None else None

    def requestAvatarId(self, credentials):
        return defer.Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials):
        address, user = await self.authenticate(credentials)
        return AvatarId.make(address.encode("utf-8"), relay=not user.has(flags.NO_RELAY))

    async def authenticate(self, credentials, service: str | None = None) -> tuple[str, VUser]:
        """(address, user) when *credentials* are good and the account may log
        in to *service* (default: the checker's); UnauthorizedLogin,
        AccountRefused or StoreUnavailable otherwise."""
        env = self._env(credentials)
        found = await self.find(credentials.username, env)
        if found is None:
            raise error.UnauthorizedLogin("no such user")
        address, user = found
        stored = parse_password(user)
        if stored is None or not await self._thread(verify, stored, credentials):
            raise error.UnauthorizedLogin("authorization failed")
        reason = refusal(user, env, service or self.service)
        if reason is None and "DOMAIN_LIMITS" in env:
            try:
                limits = await (await self.store()).get_limits(user.pw_domain)
            except Exception as exc:
                log.failure("vchkpass: unable to get domain limits for {domain}",
                            domain=user.pw_domain)
                raise StoreUnavailable(str(exc)) from exc
            reason = expiry_refusal(limits, self.now())
        if reason is not None:
            log.info("vchkpass: {address}: {reason}", address=address, reason=reason)
            raise AccountRefused(reason)
        return address, user

    def scramSecrets(self, username: bytes, hashname: str):
        return defer.Deferred.fromCoroutine(self._secrets(username, hashname))

    async def _secrets(self, username: bytes, hashname: str):
        try:
            found = await self.find(username, self.env)
        except StoreUnavailable:
            return None
        if found is None:
            return None
        stored = parse_password(found[1])
        if stored is None:
            return None
        # deriving keys from a kept clear text is PBKDF2: a thread's job
        return await self._thread(scram_secrets_for, stored, hashname)


_SHARED: dict = {}


def store_configured(home, env: Mapping[str, str]) -> bool:
    """Whether the home has a virtual-domain store: ``MYSQL_HOST``,
    ``control/host.mysql`` or the SQLite file ``vadddomain`` creates."""
    from .backend import SqliteBackend, backend_for_home

    backend = backend_for_home(home, env)
    if isinstance(backend, SqliteBackend):
        from pathlib import Path
        return Path(backend.path).exists()
    return True


def shared_store(home, env: Mapping[str, str], reactor) -> defer.Deferred:
    """One opened store per database for the whole process (a reload builds new
    checkers, not new connection pools); a failed open is retried next time."""
    from .backend import backend_for_home
    from .distributed import routed_store

    backend = backend_for_home(home, env)
    key = (backend, id(reactor))
    if key not in _SHARED:
        _SHARED[key] = routed_store(home, env, reactor=reactor, backend=backend,
                                    reactor_reads=True)

    async def opened():
        store = _SHARED[key]
        if key not in _READY:
            async with _LOCKS.setdefault(key, defer.DeferredLock()):
                if key not in _READY:
                    await store.open()
                    _READY.add(key)
        return store
    return defer.Deferred.fromCoroutine(opened())


_LOCKS: dict = {}
_READY: set = set()


def close_shared_stores() -> defer.Deferred:
    """Close the stores :func:`shared_store` opened (service shutdown, tests);
    fires when their connections are gone."""
    closing = [defer.maybeDeferred(store.close) for store in _SHARED.values()]
    _SHARED.clear()
    _READY.clear()
    _LOCKS.clear()
    return defer.gatherResults(closing)


@implementer(IScramSecretSource)
class ScramSources:
    """Several SCRAM key sources asked in turn (password file, then the store)."""

    def __init__(self, sources):
        self.sources = [s for s in sources if s is not None]

    def scramSecrets(self, username: bytes, hashname: str):
        async def first():
            for source in self.sources:
                secrets = await source.scramSecrets(username, hashname)
                if secrets is not None:
                    return secrets
            return None
        return defer.Deferred.fromCoroutine(first())
