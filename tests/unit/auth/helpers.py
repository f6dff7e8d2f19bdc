"""Shared test doubles: a synchronous in-memory checker and an smtplib-driven client."""

import smtplib

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from zope.interface import implementer

from indimail.auth import checkers, schemes
from indimail.auth.credentials import (ICramCredentials, IDigestMD5Credentials,
                                       IScramCredentials, IScramSecretSource,
                                       IUsernamePassword)
from indimail.auth.mechanisms import AuthContext, make_mechanism
from indimail.auth.realm import AvatarId, make_portal
from indimail.auth.sasl import AuthFailed, Challenge, Success, decode_response, encode_challenge


@implementer(ICredentialsChecker, IScramSecretSource)
class MemoryChecker:
    """Verifies synchronously against ``{user: stored-password}`` (tests only)."""

    credentialInterfaces = (IUsernamePassword, ICramCredentials,
                            IDigestMD5Credentials, IScramCredentials)

    def __init__(self, entries):
        self.entries = {u: schemes.parse_stored(s) for u, s in entries.items()}

    def requestAvatarId(self, credentials):
        stored = self.entries.get(credentials.username)
        if stored is None or not checkers.verify(stored, credentials):
            return defer.fail(error.UnauthorizedLogin())
        return defer.succeed(AvatarId.make(credentials.username))

    def scramSecrets(self, username, hashname):
        stored = self.entries.get(username)
        return defer.succeed(None if stored is None
                             else checkers.scram_secrets_for(stored, hashname))


def context(entries, **kw):
    checker = MemoryChecker(entries)
    kw.setdefault("hostname", "mail.example.com")
    return AuthContext(portal=make_portal([checker]), scram_source=checker, **kw)


class SmtplibDriver(smtplib.SMTP):
    """smtplib's own AUTH code, talking to a mechanism instead of a socket."""

    def __init__(self, testcase, ctx):
        super().__init__()
        self.testcase, self.ctx, self.mech, self.result = testcase, ctx, None, None

    def docmd(self, cmd, args=""):
        if cmd == "AUTH":
            name, _, initial = args.partition(" ")
            self.mech = make_mechanism(name, self.ctx)
            d = self.mech.start(decode_response(initial.encode()) if initial else None)
        else:
            d = self.mech.respond(decode_response(cmd.encode()))
        self.result = result = self.testcase.successResultOf(d)
        if isinstance(result, Challenge):
            return 334, encode_challenge(result.data)
        if isinstance(result, Success):
            return 235, b"2.7.0 ok"
        assert isinstance(result, AuthFailed)
        return result.code, result.text.encode()
