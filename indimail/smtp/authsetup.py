"""Which checkers SMTP AUTH verifies against, built at start and on SIGHUP.

Two sources, as IndiMail has them:

* ``<home>/users/passwd`` when it exists (the format of
  :class:`~indimail.auth.checkers.PasswordFileChecker`); it also serves
  SCRAM's stored keys.
* ``AUTHMODULES`` (the service's variable, e.g. ``/usr/sbin/sys-checkpwd
  /usr/sbin/vchkpass``): qmail-smtpd's ``checkprogram subprogram …``
  arguments, run with ``/bin/false`` as the last subprogram.
* the virtual-domain store when the home has one (``host.mysql``,
  ``MYSQL_HOST`` or the SQLite file): :class:`~indimail.vdomain.credchecker.StoreChecker`,
  tried after the file and before the programs; it also serves SCRAM keys.

With both, a login is tried against the file first, then the programs.
With neither, AUTH is not offered (upstream: no checkprogram, no AUTH).
"""

from __future__ import annotations

import shlex

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from zope.interface import implementer

from indimail.auth.checkers import PasswordFileChecker
from indimail.auth.checkpassword import CheckPasswordChecker
from indimail.auth.realm import capabilities, make_portal
from indimail.vdomain.credchecker import ScramSources, StoreChecker, store_configured


@implementer(ICredentialsChecker)
class FirstOf:
    """Tries *checkers* in order; the first that authenticates wins."""

    def __init__(self, checkers):
        self.checkers = list(checkers)
        ifaces = []
        for c in self.checkers:
            ifaces += [i for i in c.credentialInterfaces if i not in ifaces]
        self.credentialInterfaces = tuple(ifaces)

    def capabilities(self) -> set[str]:
        caps: set[str] = set()
        for c in self.checkers:
            caps |= capabilities(make_portal([c]))
        return caps

    def requestAvatarId(self, credentials):
        return defer.ensureDeferred(self._check(credentials))

    async def _check(self, credentials):
        failure = error.UnauthorizedLogin("authorization failed")
        for checker in self.checkers:
            if not any(i.providedBy(credentials) for i in checker.credentialInterfaces):
                continue
            try:
                return await checker.requestAvatarId(credentials)
            except error.UnauthorizedLogin as e:
                failure = e
        raise failure


class AuthSetup:
    """The portal and SCRAM key source of one service environment."""

    def __init__(self, checkers, scram_source=None):
        self.checkers = list(checkers)
        self.scram_source = scram_source
        self.portal = make_portal([FirstOf(self.checkers)])

    def capabilities(self) -> set[str]:
        return capabilities(self.portal)

    def load(self):
        """Deferred: (re)read the password file, if any."""
        loads = [defer.maybeDeferred(c.load) for c in self.checkers if hasattr(c, "load")]
        return defer.gatherResults(loads, consumeErrors=True)


def load_auth(home, env, reactor) -> AuthSetup | None:
    """The :class:`AuthSetup` for service environment *env*, or None (no AUTH)."""
    checkers = []
    scram_source = None
    path = home.users / "passwd"
    if path.exists():
        scram_source = PasswordFileChecker(str(path), reactor)
        checkers.append(scram_source)
    if store_configured(home, env):   # the virtual users, as vchkpass checks them
        store_checker = StoreChecker.for_home(home, env, reactor)
        checkers.append(store_checker)
        scram_source = ScramSources([scram_source, store_checker])
    modules = shlex.split(env.get("AUTHMODULES", "") or "")
    if modules:
        argv = modules if modules[-1] == "/bin/false" else modules + ["/bin/false"]
        checkers.append(CheckPasswordChecker(argv, reactor, env={"PATH": env.get("PATH", "/usr/bin:/bin")}))
    if not checkers:
        return None
    return AuthSetup(checkers, scram_source)
