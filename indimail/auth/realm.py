"""The portal and realm SMTP AUTH (and later the proxies) log in through.

Checkers return an :class:`AvatarId` – the user name as bytes, plus whether
the account may relay (a checkpassword program exiting 3 authenticates an
account that must not relay, as vchkpass does).
"""

from __future__ import annotations

from twisted.cred.portal import IRealm, Portal
from zope.interface import Attribute, Interface, implementer

from indimail.auth.credentials import (ICramCredentials, IDigestMD5Credentials,
                                       IScramCredentials, IUsernamePassword)

# What a checker can verify; mechanisms are advertised from these.
CAP_PLAIN = "plain"          # PLAIN, LOGIN
CAP_CRAM = "cram"            # CRAM-*, DIGEST-MD5
CAP_SCRAM_SHA1 = "scram-sha1"
CAP_SCRAM_SHA256 = "scram-sha256"


class AvatarId(bytes):
    """An authenticated user name; ``relay`` is False for no-relay accounts."""

    relay: bool = True

    @classmethod
    def make(cls, name: bytes, relay: bool = True) -> "AvatarId":
        ident = cls(name)
        ident.relay = relay
        return ident


class IAuthenticatedUser(Interface):
    """The avatar of an SMTP AUTH login."""

    username = Attribute("str: the authenticated user")
    relay = Attribute("bool: whether successful AUTH grants relaying")


@implementer(IAuthenticatedUser)
class AuthenticatedUser:
    """Who logged in, and whether that lets them relay."""

    def __init__(self, username: str, relay: bool = True):
        self.username = username
        self.relay = relay

    def __repr__(self) -> str:
        return f"AuthenticatedUser({self.username!r}, relay={self.relay})"


@implementer(IRealm)
class AuthRealm:
    """Hands out :class:`AuthenticatedUser` avatars; nothing to log out."""

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IAuthenticatedUser not in interfaces:
            raise ValueError("only IAuthenticatedUser avatars are offered")
        name = bytes(avatarId).decode("utf-8", "replace")
        avatar = AuthenticatedUser(name, getattr(avatarId, "relay", True))
        return IAuthenticatedUser, avatar, lambda: None


def make_portal(checkers) -> Portal:
    """A portal over *checkers* with the :class:`AuthRealm`."""
    return Portal(AuthRealm(), checkers)


_INTERFACE_CAPS = {
    IUsernamePassword: {CAP_PLAIN},
    ICramCredentials: {CAP_CRAM},
    IDigestMD5Credentials: {CAP_CRAM},
    IScramCredentials: {CAP_SCRAM_SHA1, CAP_SCRAM_SHA256},
}


def capabilities(portal: Portal) -> set[str]:
    """What the portal's checkers can verify right now.

    A checker may narrow what its credential interfaces promise with a
    ``capabilities()`` method (a password file without clear-text entries
    cannot verify CRAM, for instance).
    """
    caps: set[str] = set()
    for checker in set(portal.checkers.values()):
        if hasattr(checker, "capabilities"):
            caps |= set(checker.capabilities())
        else:
            for iface in checker.credentialInterfaces:
                caps |= _INTERFACE_CAPS.get(iface, set())
    return caps
