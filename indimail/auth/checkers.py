"""A ``twisted.cred`` checker over a local password file.

File format (one account a line; ``#`` comments and blank lines ignored)::

    user@example.com:{SCRAM-SHA-256}4096,salt,stored-key,server-key,$5$...
    postmaster:$6$salt$hash
    legacy:{CRAM}clear-text

The user name ends at the first ``:``; the rest is a stored password in one
of the forms of :mod:`indimail.auth.schemes`. The file is re-read when it
changes; reading and hashing run in the reactor's thread pool.
"""

from __future__ import annotations

import os

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import threads
from zope.interface import implementer

from indimail.auth import schemes
from indimail.auth.credentials import (ICramCredentials, IDigestMD5Credentials,
                                       IScramCredentials, IScramSecretSource,
                                       IUsernamePassword)
from indimail.auth.realm import (CAP_CRAM, CAP_PLAIN, CAP_SCRAM_SHA1,
                                 CAP_SCRAM_SHA256, AvatarId)
from indimail.fastlog import Logger

log = Logger()

_SCRAM_CAPS = {"sha1": CAP_SCRAM_SHA1, "sha256": CAP_SCRAM_SHA256}


def parse_password_file(data: bytes, path: str = "<passwords>") -> dict[bytes, schemes.StoredPassword]:
    """Parse the file's bytes; malformed lines are logged and skipped."""
    entries: dict[bytes, schemes.StoredPassword] = {}
    for lineno, raw in enumerate(data.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, stored = line.partition(b":")
        if not sep or not user:
            log.warn("{path}:{lineno}: no user:password", path=path, lineno=lineno)
            continue
        try:
            entries[user] = schemes.parse_stored(stored.decode("utf-8"))
        except (schemes.SchemeError, UnicodeDecodeError) as e:
            log.warn("{path}:{lineno}: {err}", path=path, lineno=lineno, err=e)
    return entries


def verify(stored: schemes.StoredPassword, credentials) -> bool:
    """Check any of our credential kinds against one stored password (blocking)."""
    if IScramCredentials.providedBy(credentials):
        secrets = scram_secrets_for(stored, credentials.hashname)
        return secrets is not None and credentials.checkSecrets(secrets)
    if ICramCredentials.providedBy(credentials) or IDigestMD5Credentials.providedBy(credentials):
        return stored.cleartext is not None and credentials.checkSecret(stored.cleartext)
    if IUsernamePassword.providedBy(credentials):
        return schemes.verify_plain(stored, credentials.password)
    return False


def scram_secrets_for(stored: schemes.StoredPassword, hashname: str):
    """The user's SCRAM secrets for *hashname*, derived from clear text if need be."""
    if stored.scram and stored.scram.hashname == hashname:
        return stored.scram
    if stored.cleartext is not None:
        salt = stored.scram.salt if stored.scram else b"indimail" + hashname.encode()
        return schemes.scram_secrets_from_password(stored.cleartext, hashname, salt)
    return None


@implementer(ICredentialsChecker, IScramSecretSource)
class PasswordFileChecker:
    """Verifies PLAIN/LOGIN, CRAM-*, DIGEST-MD5 and SCRAM against a password file."""

    credentialInterfaces = (IUsernamePassword, ICramCredentials,
                            IDigestMD5Credentials, IScramCredentials)

    def __init__(self, path: str, reactor):
        self.path = path
        self._reactor = reactor
        self._stamp = None
        self._entries: dict[bytes, schemes.StoredPassword] = {}

    def _in_thread(self, f, *args):
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)

    def _refresh(self) -> None:
        """Re-read the file when its mtime/size/inode changed (runs in a thread)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._entries = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            with open(self.path, "rb") as f:
                self._entries = parse_password_file(f.read(), self.path)
            self._stamp = stamp

    def load(self):
        """Deferred: (re)read the file now, e.g. at startup and on SIGHUP."""
        return self._in_thread(self._refresh)

    def capabilities(self) -> set[str]:
        """What the loaded entries can verify (call :meth:`load` first)."""
        caps: set[str] = set()
        for stored in self._entries.values():
            if stored.can_verify_plain():
                caps.add(CAP_PLAIN)
            if stored.can_verify_cram():
                caps.add(CAP_CRAM)
            caps |= {_SCRAM_CAPS[h] for h in stored.scram_hashes()}
        return caps

    def _lookup(self, username: bytes):
        self._refresh()
        return self._entries.get(username)

    def _check(self, credentials):
        stored = self._lookup(credentials.username)
        if stored is None or not verify(stored, credentials):
            raise error.UnauthorizedLogin("authorization failed")
        return AvatarId.make(credentials.username)

    def requestAvatarId(self, credentials):
        return self._in_thread(self._check, credentials)

    def scramSecrets(self, username: bytes, hashname: str):
        def find():
            stored = self._lookup(username)
            return None if stored is None else scram_secrets_for(stored, hashname)
        return self._in_thread(find)
