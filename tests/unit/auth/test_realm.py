"""The realm hands out an avatar with the user name and relay permission."""

from twisted.cred import error
from twisted.trial.unittest import SynchronousTestCase

from indimail.auth.credentials import UsernamePassword
from indimail.auth.realm import AuthRealm, AvatarId, IAuthenticatedUser, make_portal

from .helpers import MemoryChecker


class RealmTests(SynchronousTestCase):
    def test_avatar(self):
        """A portal login yields an IAuthenticatedUser named after the account."""
        portal = make_portal([MemoryChecker({b"u@example.com": "{CRAM}pw"})])
        iface, avatar, logout = self.successResultOf(
            portal.login(UsernamePassword(b"u@example.com", b"pw"), None, IAuthenticatedUser))
        self.assertIs(iface, IAuthenticatedUser)
        self.assertEqual((avatar.username, avatar.relay), ("u@example.com", True))
        logout()

    def test_bad_password(self):
        """A wrong password fails with UnauthorizedLogin."""
        portal = make_portal([MemoryChecker({b"u": "{CRAM}pw"})])
        self.failureResultOf(portal.login(UsernamePassword(b"u", b"px"), None, IAuthenticatedUser),
                             error.UnauthorizedLogin)

    def test_no_relay_avatar(self):
        """An AvatarId marked relay=False gives an avatar that may not relay."""
        _, avatar, _ = AuthRealm().requestAvatar(AvatarId.make(b"x", relay=False), None,
                                                 IAuthenticatedUser)
        self.assertFalse(avatar.relay)
        self.assertRaises(ValueError, AuthRealm().requestAvatar, b"x", None)
