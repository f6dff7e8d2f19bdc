"""Fakes for STARTTLS/AUTH protocol tests: a TLS-capable StringTransport and
an in-memory checker behind the real :class:`AuthSetup`."""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from indimail.auth.credentials import ICramCredentials, IUsernamePassword
from indimail.auth.realm import CAP_CRAM, CAP_PLAIN, AvatarId
from indimail.smtp.authsetup import AuthSetup

from .support import Harness

USERS = {b"alice@example.com": b"secret", b"norelay@example.com": b"secret"}
TLS_DESC = "(TLSv1.3 TLS_AES_256_GCM_SHA384 encrypted)"


class FakeConnection:
    """What pyOpenSSL's Connection tells after a TLS 1.3 handshake."""

    def get_protocol_version_name(self):
        return "TLSv1.3"

    def get_cipher_name(self):
        return "TLS_AES_256_GCM_SHA384"

    def export_keying_material(self, label, length, context):
        return b"x" * length


class TLSStringTransport(StringTransport):
    """Records ``startTLS``: what was written before it went out in clear."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.tls_options = None
        self.clear_before_tls = None

    def startTLS(self, options):
        self.tls_options = options
        self.clear_before_tls = self.value()

    def getHandle(self):
        return FakeConnection() if self.tls_options is not None else None


@implementer(ICredentialsChecker)
class MemoryChecker:
    """PLAIN/LOGIN and CRAM against :data:`USERS`; ``norelay@`` may not relay,
    ``tempfail@`` fails temporarily."""

    credentialInterfaces = (IUsernamePassword, ICramCredentials)

    def capabilities(self):
        return {CAP_PLAIN, CAP_CRAM}

    def requestAvatarId(self, credentials):
        if credentials.username == b"tempfail@example.com":
            return defer.fail(error.LoginFailed("database down"))
        secret = USERS.get(credentials.username)
        ok = secret is not None and (
            credentials.checkSecret(secret) if ICramCredentials.providedBy(credentials)
            else credentials.checkPassword(secret))
        if not ok:
            return defer.fail(error.UnauthorizedLogin("authorization failed"))
        return defer.succeed(AvatarId.make(credentials.username,
                                           relay=not credentials.username.startswith(b"norelay")))


def tls_harness(testcase, env=None, auth=True, **kw) -> Harness:
    """A Harness whose transport can start TLS and whose service has a certificate."""
    options = object()
    h = Harness(testcase, env=env, transport_class=TLSStringTransport,
                tls=lambda env: options, auth=AuthSetup([MemoryChecker()]) if auth else None,
                **kw)
    h.options = options
    return h


def b64(text: str | bytes) -> str:
    if isinstance(text, str):
        text = text.encode()
    return base64.b64encode(text).decode()


def cram_response(user: bytes, secret: bytes, challenge_b64: str) -> str:
    challenge = base64.b64decode(challenge_b64)
    digest = hmac.new(secret, challenge, hashlib.md5).hexdigest().encode()
    return b64(user + b" " + digest)
