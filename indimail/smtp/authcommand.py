"""STARTTLS (RFC 3207) and AUTH (RFC 4954) for :class:`SMTPServerProtocol`.

Replies are qmail-smtpd's.  STARTTLS throws away whatever the client
pipelined behind it (CVE-2011-0411) and everything learnt from the client
before it (HELO, transaction).  AUTH drives an :mod:`indimail.auth`
mechanism with 334 challenges; success sets ``RELAYCLIENT`` (unless the
checker says the account may not relay), ``TCPREMOTEINFO`` and
``AUTHINFO`` in the session environment.  A wrong password is answered
after ``auth_fail_delay`` seconds (upstream sleeps 5) and counted: after
``MAX_AUTH_FAILURES`` (default 5; 0 = no limit) the connection is closed.
When the STARTTLS handshake is done the session logs upstream's
``ssl-version=`` line and a client certificate may grant relaying
(:mod:`.tlsclients`).
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.internet.interfaces import IHandshakeListener
from zope.interface import implementer

from indimail.auth.advertise import advertised_mechanisms
from indimail.auth.channelbinding import transport_binding
from indimail.auth.mechanisms import AuthContext, make_mechanism
from indimail.auth.sasl import (AuthFailed, Challenge, MalformedResponse, Success,
                                decode_response, encode_challenge)

from . import reply
from .reply import Reply, SMTPError
from .tlsclients import apply_check

AUTH_FAIL_DELAY = 5.0
DEFAULT_MAX_AUTH_FAILURES = 5


@implementer(IHandshakeListener)
class TLSAndAuthCommands:
    """Mixed into the protocol; needs ``session``, ``settings``, ``clock``,
    ``transport``, ``log``, ``_send``, ``_discard_input``."""

    tls = None                    # callable(env) -> context factory, or None
    auth = None                   # AuthSetup, or None
    auth_fail_delay = AUTH_FAIL_DELAY
    _sasl = None                  # the mechanism of an AUTH exchange under way
    _auth_wait = None             # the failure delay under way
    auth_failures = 0

    # -- EHLO -------------------------------------------------------------------------
    def tls_options(self):
        return None if self.tls is None else self.tls(self.session.env)

    def auth_mechanisms(self) -> list[str]:
        """What EHLO offers: nothing before STARTTLS under ``FORCE_TLS``."""
        s = self.session
        if self.auth is None or (s.env.flag("FORCE_TLS") and not s.tls):
            return []
        return advertised_mechanisms(s.env, self.auth.capabilities(), tls=s.tls)

    def auth_keywords(self) -> list[str]:
        """``AUTH …`` and the ``AUTH=…`` form old Outlook wants, as upstream."""
        mechs = " ".join(self.auth_mechanisms())
        return [f"AUTH {mechs}", f"AUTH={mechs}"] if mechs else []

    def tls_keywords(self) -> list[str]:
        if self.session.tls or self.tls_options() is None:
            return []
        return ["STARTTLS"]

    # -- STARTTLS -----------------------------------------------------------------------
    def smtp_STARTTLS(self, arg: str):
        s = self.session
        if s.tls:
            raise SMTPError(502, reply.NOT_RECOGNIZED.format(cmd="STARTTLS"))
        if arg:
            raise SMTPError(501, reply.TLS_NO_PARAMS)
        options = self.tls_options()
        if options is None:
            raise SMTPError(454, reply.TLS_UNAVAILABLE)
        self._discard_input()        # nothing sent in clear may count after TLS
        self._send(Reply.of(220, reply.READY_FOR_TLS))
        self.transport.startTLS(options)
        s.tls = True
        s.reset()
        s.helo = None
        s.esmtp = False
        return None

    def handshakeCompleted(self) -> None:
        """STARTTLS done: log the version, then look at the client certificate."""
        s = self.session
        conn = getattr(self.transport, "getHandle", lambda: None)()
        if s is None or conn is None or not hasattr(conn, "get_protocol_version_name"):
            return
        self.log.info("qmail-smtpd: pid {pid} from {ip} ssl-version={version}",
                      pid=self.settings.pid, ip=s.remote_ip,
                      version=conn.get_protocol_version_name())
        check = getattr(self.tls, "client_check", None)
        if check is None:
            return
        try:
            apply_check(s, check(conn))
        except Exception:
            self.log.failure("checking the client certificate failed")

    # -- AUTH ---------------------------------------------------------------------------
    def smtp_AUTH(self, arg: str):
        s = self.session
        if self.auth is None:
            raise SMTPError(503, reply.AUTH_NOT_AVAILABLE)
        if s.authenticated:
            raise SMTPError(503, reply.AUTH_ALREADY)
        if s.transaction is not None:
            raise SMTPError(503, reply.AUTH_IN_TRANSACTION)
        if s.env.flag("FORCE_TLS") and not s.tls:
            raise SMTPError(530, reply.STARTTLS_FIRST)
        name, _, initial = arg.partition(" ")
        name = name.upper()
        offered = self.auth_mechanisms()
        if name not in offered:
            if name in ("LOGIN", "PLAIN") and s.env.flag("SECURE_AUTH") and not s.tls:
                raise SMTPError(530, reply.AUTH_PROHIBITED)
            raise SMTPError(504, reply.AUTH_UNIMPLEMENTED)
        ctx = AuthContext(self.auth.portal, self.settings.me,
                          scram_source=self.auth.scram_source,
                          channel_binding=transport_binding(self.transport),
                          plus_advertised=any(m.endswith("-PLUS") for m in offered),
                          now=self.clock.seconds, session_env=dict(s.env))
        mech = make_mechanism(name, ctx)
        initial = initial.strip()
        try:
            data = decode_response(initial.encode("ascii", "replace")) if initial else None
        except MalformedResponse as e:
            return self._auth_failed(e.failure)
        self._sasl = mech
        return mech.start(data).addCallback(self._auth_result)

    def auth_line(self, text: str):
        """One client line of an AUTH exchange (``*`` cancels)."""
        mech = self._sasl
        try:
            data = decode_response(text.encode("ascii", "replace"))
        except MalformedResponse as e:
            self._sasl = None
            return self._auth_failed(e.failure)
        return mech.respond(data).addCallback(self._auth_result)

    def _auth_result(self, result):
        if isinstance(result, Challenge):
            return Reply.of(334, encode_challenge(result.data).decode("ascii"))
        self._sasl = None
        if isinstance(result, Success):
            return self._authenticated(result)
        return self._auth_failed(result)

    def _authenticated(self, result: Success) -> Reply:
        s = self.session
        user = result.avatar.username
        s.authenticated = user
        env = s.env.set(TCPREMOTEINFO=user, AUTHINFO=user)
        if result.avatar.relay:
            env = env.set(RELAYCLIENT="")
        s.env = env
        self.log.info("qmail-smtpd: pid {pid} from {ip} AUTH {user} mechanism {mech} ok",
                      pid=self.settings.pid, ip=s.remote_ip, user=user, mech=result.mechanism)
        self.apply_envrules("auth", user)
        return Reply.of(235, reply.AUTH_OK)

    def _auth_failed(self, failure: AuthFailed):
        if failure.code != 535:
            return Reply.of(failure.code, f"{failure.text} (#{failure.enhanced})")
        self.auth_failures += 1
        s = self.session
        self.log.info("qmail-smtpd: pid {pid} {ip} AUTH status=[1] auth failure",
                      pid=self.settings.pid, ip=s.remote_ip)
        limit = s.env.int("MAX_AUTH_FAILURES", DEFAULT_MAX_AUTH_FAILURES)
        self._auth_wait = d = task.deferLater(self.clock, self.auth_fail_delay, lambda: None)

        def answer(_):
            self._auth_wait = None
            if limit > 0 and self.auth_failures >= limit:
                raise SMTPError(535, reply.AUTH_FAILED, close=True)
            return Reply.of(535, reply.AUTH_FAILED)
        return d.addCallbacks(answer, lambda f: f.trap(defer.CancelledError) and None)

    def cancel_auth_wait(self) -> None:
        """The connection went away during the failure delay."""
        wait, self._auth_wait = self._auth_wait, None
        if wait is not None:
            wait.cancel()
