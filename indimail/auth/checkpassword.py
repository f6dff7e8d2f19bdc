"""A ``twisted.cred`` checker that runs a checkpassword program.

qmail-smtpd is started as ``qmail-smtpd hostname checkprogram subprogram …``
and runs ``checkprogram subprogram …`` for each AUTH, writing on fd 3::

    user \\0 password-or-challenge \\0 response \\0 method \\0

where *method* is one byte, libqmail's ``authmethods.h`` number (1 LOGIN,
2 PLAIN, 3 CRAM-MD5 … 10 DIGEST-MD5). For PLAIN/LOGIN the second field is
the password and the response is empty; for CRAM-* it is the challenge and
the hex digest; for DIGEST-MD5 it is the 32-digit response and the
newline-separated directives, and the program writes ``rspauth`` (32 hex
digits) on fd 6. Exit 0 = good, 3 = good but no relaying, 111 = temporary
failure, anything else = bad credentials.
"""

from __future__ import annotations

from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, protocol
from zope.interface import implementer

from indimail.auth.credentials import (AUTH_METHOD_NUMBERS, ICramCredentials,
                                       IDigestMD5Credentials, IUsernamePassword)
from indimail.auth.realm import CAP_CRAM, CAP_PLAIN, AvatarId
from indimail.fastlog import Logger

log = Logger()


class CheckPasswordTempFail(error.LoginFailed):
    """The program exited 111 (or could not run): answer 454, not 535."""

    smtp_reply = (454, "4.3.0", "temporary authentication failure")


def fd3_data(credentials, method: str | None = None) -> bytes:
    """The bytes qmail-smtpd writes to the checkpassword program's fd 3."""
    if IDigestMD5Credentials.providedBy(credentials):
        method = "DIGEST-MD5"
        second, third = credentials.response, credentials.checkpassword_data()
    elif ICramCredentials.providedBy(credentials):
        method = credentials.mechanism
        second, third = credentials.challenge, credentials.response
    else:
        method = method or getattr(credentials, "mechanism", None) or "PLAIN"
        second, third = credentials.password, b""
    if any(b"\0" in field for field in (credentials.username, second, third)):
        raise error.UnauthorizedLogin("NUL in credentials")
    return b"%s\0%s\0%s\0%c\0" % (credentials.username, second, third,
                                 AUTH_METHOD_NUMBERS[method])


class _CheckProtocol(protocol.ProcessProtocol):
    def __init__(self, data: bytes, done: defer.Deferred):
        self.data = data
        self.done = done
        self.fd6 = b""
        self.output = b""

    def connectionMade(self):
        self.transport.writeToChild(3, self.data)
        self.transport.closeChildFD(3)
        self.transport.closeStdin()

    def childDataReceived(self, childFD, data):
        if childFD == 6:
            self.fd6 += data
        elif len(self.output) < 4096:
            self.output += data

    def processEnded(self, reason):
        self.done.callback((reason.value.exitCode, reason.value.signal))


@implementer(ICredentialsChecker)
class CheckPasswordChecker:
    """Runs ``argv`` (checkprogram and its subprograms) for each login.

    The child's environment is *env* plus the credentials' ``session_env``
    (set by the mechanism from its :class:`AuthContext`), as qmail-smtpd's
    children inherit TCPREMOTEIP and friends.
    """

    credentialInterfaces = (IUsernamePassword, ICramCredentials, IDigestMD5Credentials)

    def __init__(self, argv: list[str], reactor, env: dict[str, str] | None = None,
                 timeout: float = 60.0, clock=None):
        if not argv:
            raise ValueError("checkpassword needs a program")
        self.argv = list(argv)
        self._reactor = reactor
        self.env = dict(env or {})
        self.timeout = timeout
        self._clock = clock if clock is not None else reactor

    def capabilities(self) -> set[str]:
        return {CAP_PLAIN, CAP_CRAM}

    def requestAvatarId(self, credentials):
        return defer.ensureDeferred(self._run(credentials))

    async def _run(self, credentials):
        if not credentials.username:
            raise error.UnauthorizedLogin("empty user name")
        done: defer.Deferred = defer.Deferred()
        proto = _CheckProtocol(fd3_data(credentials), done)
        env = dict(self.env)
        env.update(getattr(credentials, "session_env", None) or {})
        try:
            process = self._reactor.spawnProcess(
                proto, self.argv[0], self.argv, env=env,
                childFDs={0: "w", 1: "r", 2: "r", 3: "w", 6: "r"})
        except OSError as e:
            log.error("cannot run {argv}: {err}", argv=self.argv, err=e)
            raise CheckPasswordTempFail(str(e))
        timer = self._clock.callLater(self.timeout, self._kill, process)
        try:
            code, sig = await done
        finally:
            if timer.active():
                timer.cancel()
        if proto.output:
            log.info("{prog}: {out}", prog=self.argv[0],
                     out=proto.output.decode("utf-8", "replace").strip())
        if code == 111 or sig is not None:
            raise CheckPasswordTempFail(f"{self.argv[0]} exit {code} signal {sig}")
        if code not in (0, 3):
            raise error.UnauthorizedLogin("authorization failed")
        if IDigestMD5Credentials.providedBy(credentials):
            rspauth = proto.fd6.strip()
            if len(rspauth) != 32:
                raise error.UnauthorizedLogin("no rspauth from checkpassword")
            credentials.rspauth = rspauth
        return AvatarId.make(credentials.username, relay=(code == 0))

    def _kill(self, process):
        log.warn("{prog} timed out; killing it", prog=self.argv[0])
        try:
            process.signalProcess("KILL")
        except Exception:  # already gone
            pass
