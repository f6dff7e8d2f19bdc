"""The SMTP server protocol: bytes in, commands, replies out.

Modelled on indimail-mta's qmail-smtpd (``smtpd.c``) and its replies.
Commands are handled strictly in order: a handler may return a Deferred
(queueing, later policy plugins) and pipelined commands behind it wait in
the input buffer until it has answered.  DATA is decoded by
:class:`~indimail.smtp.data.DataDecoder` and streamed into the message
sink as it arrives; reading pauses while the sink is behind.

The protocol reads no file: the service hands it a *setup* callable that
builds the :class:`Session` and :class:`SessionSettings` for the
connection's addresses, the *plugins* (a
:class:`~indimail.plugins.chain.PluginChain`: every policy decision, from
badip at connect to rcpthosts at RCPT, is a plugin hook) and a message *sink*
(:class:`~indimail.queue.enqueue.Enqueuer`: ``begin(env, invoked=,
remote_ip=)`` returning an object with ``write``, ``finish``, ``abort``,
``pending_bytes`` and ``wait_for_drain``).  STARTTLS and AUTH live in
:mod:`~indimail.smtp.authcommand`; the factory sets ``tls`` and ``auth``.

*rules* (optional, :class:`~indimail.smtp.envrules.RulesFiles`) answers
which envrules assignments apply and re-derives the settings from a changed
environment: from.envrules at MAIL and rcpt.envrules at RCPT change the
environment of that transaction only, domainqueue (per accepted recipient)
too, so the sink's ``begin(env)`` sees the queue; auth.envrules change the
connection's environment after AUTH.  The session limits (MAXRECIPIENTS,
TARPITCOUNT/TARPITDELAY, GREETDELAY) come from the settings and wait on
the injected clock, never by sleeping.

Extensions beyond upstream's: BDAT (CHUNKING, :mod:`.bdat`) reads each
chunk by its octet count into the same message sink, the data hook at the
first chunk and DATA's end path (queue hook, commit) after LAST;
ENHANCEDSTATUSCODES (:mod:`.enhanced`) is applied to every reply in
:meth:`_send`; SMTPUTF8 (:mod:`.utf8`) gates non-ASCII addresses.
"""

from __future__ import annotations

import inspect

from typing import Callable

from twisted.internet import defer, task
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from indimail.config.control import ControlFileError
from indimail.fastlog import Logger
from indimail.plugins.api import Result, Verdict
from indimail.plugins.context import HookContext
from indimail.queue.errors import QueueError
from indimail.queue.received import rfc5322_date
from indimail.sendnow import send_now

from . import reply
from . import enhanced, utf8
from .address import parse_path
from .authcommand import TLSAndAuthCommands
from .bdat import BdatDecoder, parse_bdat
from .data import DataDecoder
from .headers import HeaderBlock
from .received import smtpd_received
from .reply import Reply, SMTPError
from .session import Session, Transaction
from .settings import SessionSettings
from .tls import describe
from .tlsclients import received_note


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("indimail")
    except Exception:  # running from a source tree that is not installed
        return "0.1.0"


VERSION = _version()

COMMANDS = ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "HELP",
            "STARTTLS", "AUTH", "BDAT")
# while a BDAT message is open (chunks sent, no LAST yet): RSET/HELO/EHLO
# abandon it, these go on, anything else is out of sequence
BDAT_ALLOWED = ("BDAT", "RSET", "HELO", "EHLO", "NOOP", "QUIT", "HELP", "VRFY")
HIGH_WATER = 1 << 20       # pending queue bytes above which reading pauses
BACKLOG = 1 << 16          # unread pipelined input above which reading pauses

Setup = Callable[[IAddress, IAddress], "tuple[Session, SessionSettings]"]


RCPT_OK = enhanced.with_code(Reply.of(250, reply.OK), "2.1.5")


class SMTPServerProtocol(TLSAndAuthCommands, Protocol):
    """One SMTP connection."""

    log = Logger()

    def __init__(self, setup: Setup, plugins, sink, clock, *, tls=None, auth=None,
                 rules=None):
        # the class Logger's descriptor makes a new Logger at every access;
        # the hooks' context takes one per command, so keep this one
        self.log = vars(SMTPServerProtocol)["log"].__get__(self, type(self))
        self.tls = tls
        self.rules = rules
        self.auth = auth
        self._setup = setup
        self.plugins = plugins
        self.sink = sink
        self.clock = clock
        self.session: Session | None = None
        self.settings: SessionSettings | None = None
        self._greeted = False
        self._greet_timer = None
        self.on_lost = None
        self._buffer = bytearray()
        self._start = 0               # unread input begins here in _buffer
        self._busy = False            # a handler's Deferred is outstanding
        self._processing = False
        self._closing = False         # QUIT or a fatal error: read no more
        self._lost = False
        self._timer = None
        self._pauses: set[str] = set()
        self._decoder: DataDecoder | None = None
        self._headers: HeaderBlock | None = None
        self._message = None
        self._chunk = None            # the BDAT chunk being read (bdat_chunk state)
        self._bdat = None             # the BDAT message open across chunks

    # -- connection -----------------------------------------------------------
    def connectionMade(self) -> None:
        try:
            self.session, self.settings = self._setup(self.transport.getPeer(),
                                                      self.transport.getHost())
        except Exception:
            self.log.failure("cannot set up SMTP session")
            self.transport.write(Reply.of(421, reply.LOCAL_FAILURE).to_bytes())
            self._closing = True
            self.transport.loseConnection()
            return
        if self.plugins.has("connect"):
            d = self.hook("connect")
            d.addCallbacks(self._connect_verdict, self._connect_failed)
        else:
            self._start_greeting()

    def _connect_verdict(self, result: Result) -> None:
        if self._lost:
            return
        if result.verdict in (Verdict.DENY, Verdict.DENYSOFT, Verdict.DISCONNECT):
            # upstream (badip, tcpserver deny): the reply instead of a greeting, then close
            self._send(result.reply())
            self._close()
            return
        self._start_greeting()

    def _connect_failed(self, failure: Failure) -> None:
        self.log.failure("connect hooks failed", failure)
        self._send(Reply.of(421, reply.LOCAL_FAILURE))
        self._close()

    def _start_greeting(self) -> None:
        delay = self.settings.greetdelay
        if delay:   # upstream greetdelay_check(): > 0 waits, < 0 also catches early talkers
            self._greet_timer = self.clock.callLater(abs(delay), self._greet)
        else:
            self._greet()

    @property
    def settings(self) -> SessionSettings | None:
        """The connection's settings, or those re-derived for the transaction."""
        session = self.session
        if session is not None and session.txn_settings is not None:
            return session.txn_settings
        return self._settings

    @settings.setter
    def settings(self, value: SessionSettings | None) -> None:
        self._settings = value

    def _greet(self) -> None:
        self._greet_timer = None
        self._greeted = True
        self._send(self.greeting())
        self._touch()
        self._unpause("greet")
        self._process()   # what a client sent during a positive GREETDELAY

    def _early_talker(self) -> None:
        self.log.info("qmail-smtpd: pid {pid} {ip} SMTP Protocol violation - Early Talking",
                      pid=self.settings.pid, ip=self.session.remote_ip)
        self._cancel_greet()
        self._discard_input()
        self._send(Reply.of(554, reply.EARLY_TALKER))
        self._close()

    def _cancel_greet(self) -> None:
        if self._greet_timer is not None and self._greet_timer.active():
            self._greet_timer.cancel()
        self._greet_timer = None

    def connectionLost(self, reason=None) -> None:
        self._lost = True
        self._closing = True
        self._cancel_greet()
        self._stop_timer()
        self.cancel_auth_wait()
        if self.on_lost is not None:   # the factory's session count
            self.on_lost()
        if self._decoder is not None:
            self._end_message()
        self._chunk = None
        self._bdat_abort()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._greeted and self.settings is not None and self.settings.greetdelay < 0:
            self._early_talker()
            return
        self._buffer += data
        if not self._greeted and len(self._buffer) > BACKLOG:
            self._pause("greet")   # read no more until the (delayed) greeting
        self._touch()
        self._process()

    # -- replies ----------------------------------------------------------------
    def greeting(self) -> Reply:
        s = self.settings
        lines = self.greeting_lines()
        if s.extra_greet:   # upstream esmtp_print(): on the first line
            lines[0] += (f" (NO UCE) ESMTP IndiMail {VERSION} "
                         f"{rfc5322_date(self.clock.seconds())}")
        return Reply.of(220, *lines)

    def greeting_lines(self, last: str = "") -> list[str]:
        """smtpgreeting, one reply line per line (upstream ``smtp_greet()``),
        *last* appended to the last one."""
        s = self.settings
        lines = list(s.greeting_lines or (s.greeting,))
        lines[-1] += last
        return lines

    def _send(self, r: Reply | None) -> None:
        if r is not None and not self._lost:
            codes = self._enhanced_codes()
            try:
                data = enhanced.wire(r, codes)
            except TypeError:        # a Reply built by hand with unhashable lines
                data = (enhanced.enhance(r) if codes else r).to_bytes()
            send_now(self.transport, data)

    def _enhanced_codes(self) -> bool:
        """RFC 2034: codes on every reply once EHLO has offered them."""
        s = self.session
        return s is not None and s.esmtp and self.settings is not None \
            and self.settings.enhanced

    def _close(self) -> None:
        self._closing = True
        self._stop_timer()
        if not self._lost:
            self.transport.loseConnection()

    # -- flow control -----------------------------------------------------------
    def _pause(self, why: str) -> None:
        if not self._pauses and not self._lost:
            self.transport.pauseProducing()
        self._pauses.add(why)

    def _unpause(self, why: str) -> None:
        if why in self._pauses:
            self._pauses.discard(why)
            if not self._pauses and not self._lost:
                self.transport.resumeProducing()

    # -- idle timeout -------------------------------------------------------------
    def _touch(self) -> None:
        """(Re)start the wait for the client: ``timeoutsmtpd`` seconds."""
        if self._closing or self.settings is None or not self._greeted:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.settings.timeout)
        else:
            self._timer = self.clock.callLater(self.settings.timeout, self._timed_out)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._busy or self._pauses:   # our own work, not the client's silence
            self._touch()
            return
        self.log.info("timeout reached reading data from client {ip}",
                      ip=self.session.remote_ip)
        if self._decoder is not None:
            self._end_message()
        self._chunk = None
        self._bdat_abort()
        self._send(Reply.of(451, reply.TIMEOUT))
        self._close()

    # -- the input loop -------------------------------------------------------------
    def _process(self) -> None:
        if self._processing or not self._greeted:
            return
        self._processing = True
        try:
            while not self._busy and not self._closing and self._start < len(self._buffer):
                if self._decoder is not None:
                    self._feed_data()
                    continue
                if self._chunk is not None:
                    self._feed_chunk()
                    continue
                start = self._start
                nl = self._buffer.find(b"\n", start)
                limit = self.settings.maxcmdlen
                if nl < 0:
                    if len(self._buffer) - start > limit:
                        self._too_long()
                    break
                if nl + 1 - start > limit:
                    self._too_long()
                    break
                line = bytes(self._buffer[start:nl + 1])
                self._start = nl + 1
                self._run(self._command, line)
        finally:
            self._processing = False
            del self._buffer[:self._start]   # compact once, not per line
            self._start = 0
        if self._busy and len(self._buffer) > BACKLOG:
            self._pause("backlog")
        else:
            self._unpause("backlog")

    def _discard_input(self) -> None:
        self._buffer.clear()
        self._start = 0

    def _run(self, f, *args) -> None:
        """Call handler *f*; its reply (or error) is sent when it is ready and
        the next command waits until then.  A reply given at once (most of
        them) is sent at once, without the Deferred ``maybeDeferred`` makes."""
        try:
            result = f(*args)
        except BaseException:
            result = Failure()
        if isinstance(result, Failure):
            self._failed(result)
            return
        if inspect.iscoroutine(result):
            result = defer.Deferred.fromCoroutine(result)
        # most handlers answer a Reply at once (Deferred's isinstance goes through ABCMeta)
        if result.__class__ is Reply or not isinstance(result, defer.Deferred):
            try:
                self._send(result)
            except Exception:
                self.log.failure("sending a reply failed")
            return
        answered = []   # not result.called: a fired Deferred may wait on a chained one

        def settled(result):
            """Send the reply; if the session waited for it, read on (one
            callback: under load every suspended RCPT check runs it)."""
            try:
                if isinstance(result, Failure):
                    self._failed(result)
                else:
                    self._send(result)
            except Exception:
                self.log.failure("sending a reply failed")
            if answered:
                self._resume(None)
            else:
                answered.append(True)
        result.addBoth(settled)
        if not answered:
            answered.append(False)
            self._busy = True

    def _resume(self, _) -> None:
        self._busy = False
        self._touch()
        self._process()

    def _failed(self, failure: Failure) -> None:
        if failure.check(SMTPError):
            err = failure.value
            self._send(err.reply)
            if err.close:
                self._close()
            return
        self.log.failure("unexpected error in SMTP session", failure)
        self._send(Reply.of(451, reply.LOCAL_FAILURE))

    def _too_long(self) -> None:
        self.log.info("command too long from {ip}", ip=self.session.remote_ip)
        self._discard_input()
        self._send(Reply.of(553, reply.TOO_LONG))
        self._close()

    def _command(self, line: bytes):
        text = line[:-1]
        if text.endswith(b"\r"):
            text = text[:-1]
        text = text.replace(b"\0", b"\n").decode("utf-8", "surrogateescape")
        if self._sasl is not None:
            return self.auth_line(text)
        verb, _, arg = text.partition(" ")
        arg = arg.lstrip(" ")
        name = verb.upper()
        if self._bdat is not None:   # RFC 3030: between chunks only these
            if name not in BDAT_ALLOWED:
                raise SMTPError(503, reply.BAD_SEQUENCE)
            if name in ("RSET", "HELO", "EHLO"):
                self._bdat_abort()
        if name in COMMANDS:
            return getattr(self, "smtp_" + name)(arg)
        return self.unknown(verb, arg)

    # -- plugins ------------------------------------------------------------------------
    def hook(self, name: str, *args) -> defer.Deferred:
        """Run the *name* hook of every plugin; fires with the deciding Result."""
        return self.plugins.run(name, self._hook_context(), *args)

    def hook_now(self, name: str, *args) -> Result | defer.Deferred:
        """:meth:`hook`, but the Result itself when every plugin answered at
        once (MAIL and RCPT, the commands of every message, then need no
        Deferred)."""
        return self.plugins.run_now(name, self._hook_context(), *args)

    def _hook_context(self) -> HookContext:
        return HookContext(self.session, self.session.transaction, self.settings, self.clock,
                           self.log)

    @staticmethod
    def refusal(result: Result) -> SMTPError | None:
        """The SMTPError for a refusing verdict, None for the others."""
        if result.verdict in (Verdict.DENY, Verdict.DENYSOFT, Verdict.DISCONNECT):
            r = result.reply()
            return SMTPError(r.code, *r.lines, close=result.verdict is Verdict.DISCONNECT)
        return None

    def _after_hook(self, result: Result, ok: Reply) -> Reply:
        error = self.refusal(result)
        if error is not None:
            raise error
        return ok

    # -- commands -----------------------------------------------------------------------
    def unknown(self, verb: str, arg: str) -> Reply:
        """upstream ``err_unimpl()``: X-commands are "not implemented"."""
        if verb[:1] in ("x", "X"):
            return Reply.of(502, reply.NOT_IMPLEMENTED.format(cmd=verb))
        if arg:
            return Reply.of(502, reply.NOT_RECOGNIZED_ARG.format(cmd=verb, arg=arg))
        return Reply.of(502, reply.NOT_RECOGNIZED.format(cmd=verb))

    def smtp_HELO(self, arg: str):
        self.session.reset()
        self.session.helo = arg or self.session.remote_host or "unknown"
        self.session.esmtp = False
        lines = self.greeting_lines("" if arg else f" [{self.session.remote_ip}]")
        return self._helo_hooks(arg, enhanced.exempt(Reply.of(250, *lines)))

    def smtp_EHLO(self, arg: str):
        self.session.reset()
        self.session.helo = arg or self.session.remote_host or "unknown"
        self.session.esmtp = True
        first = self.settings.greeting + ("" if arg else f" [{self.session.remote_ip}]")
        return self._helo_hooks(arg, enhanced.exempt(Reply.of(250, first,
                                                              *self.ehlo_extensions())))

    def _helo_hooks(self, arg: str, ok: Reply):
        if not self.plugins.has("helo"):
            return ok
        d = self.hook("helo", arg)

        def decided(result: Result) -> Reply:
            if self.refusal(result) is not None:
                self.session.helo = None   # a refused greeting is not remembered
            return self._after_hook(result, ok)
        return d.addCallback(decided)

    def ehlo_extensions(self) -> list[str]:
        """The EHLO keywords in upstream's order: AUTH first, STARTTLS, then
        SMTPUTF8 before HELP; ENHANCEDSTATUSCODES and CHUNKING (which
        upstream lacks) after SIZE."""
        st = self.settings
        size = st.databytes
        return [*self.auth_keywords(), "PIPELINING", "8BITMIME",
                f"SIZE {size}" if size else "SIZE",
                *(["ENHANCEDSTATUSCODES"] if st.enhanced else []),
                *(["CHUNKING"] if st.chunking else []),
                *self.tls_keywords(), *(["SMTPUTF8"] if st.smtputf8 else []), "HELP"]

    def smtp_MAIL(self, arg: str) -> Reply:
        path = parse_path(arg)
        if path is None:
            raise SMTPError(555, reply.SYNTAX_ADDRESS)
        smtputf8 = self.settings.smtputf8 and path.has("SMTPUTF8")
        if not utf8.address_allowed(path.address, smtputf8):
            raise SMTPError(553, reply.NON_ASCII)
        s = self.session
        before = (s.transaction, s.env, s.conn_env, s.txn_settings)
        s.reset()   # a new MAIL starts from the connection's environment

        def restore(failure: Failure) -> Failure:
            # a refused MAIL leaves an earlier transaction as it was
            s.transaction, s.env, s.conn_env, s.txn_settings = before
            return failure

        def accepted(r: Reply) -> Reply:
            if smtputf8 and s.transaction is not None:
                s.transaction.notes["smtputf8"] = True
            return enhanced.with_code(r, "2.1.0") if r.code == 250 else r
        try:
            result = self._mail(path)
        except BaseException:
            restore(Failure())
            raise
        if isinstance(result, defer.Deferred):
            return result.addCallbacks(accepted, restore)
        return accepted(result)

    def _mail(self, path) -> Reply:
        self.apply_envrules("from", path.address)
        env = self.session.env
        if env.flag("REQUIREAUTH") and not self.session.authenticated:
            raise SMTPError(530, reply.AUTH_REQUIRED)
        size = path.param("SIZE")
        limit = self.settings.databytes
        if size is not None and limit:
            try:
                declared = int(size)
            except ValueError:
                raise SMTPError(501, reply.PARAM_SYNTAX) from None
            if declared > limit:   # RFC 1870: refuse at MAIL (upstream waits for DATA)
                raise SMTPError(552, reply.SIZE_EXCEEDED)
        if env.flag("FORCE_TLS") and not self.session.tls:
            raise SMTPError(530, reply.STARTTLS_FIRST)
        txn = Transaction(path.address, dict(path.params))
        self.session.transaction = txn
        ok = Reply.of(250, reply.OK)
        if not self.plugins.has("mail"):
            return ok

        def decided(result: Result) -> Reply:
            if result.verdict is Verdict.DISCARD:
                txn.discard = True
            return self._after_hook(result, ok)
        result = self.hook_now("mail", path.address)
        if isinstance(result, defer.Deferred):
            return result.addCallback(decided)
        return decided(result)

    def smtp_RCPT(self, arg: str):
        txn = self.session.transaction
        if txn is None:
            raise SMTPError(503, reply.MAIL_FIRST)
        path = parse_path(arg)
        if path is None:
            raise SMTPError(555, reply.SYNTAX_ADDRESS)
        if not utf8.address_allowed(path.address, bool(txn.notes.get("smtputf8"))):
            raise SMTPError(553, reply.NON_ASCII)
        self.apply_envrules("rcpt", path.address)
        result = self.hook_now("rcpt", path.address)
        if isinstance(result, defer.Deferred):
            return result.addCallbacks(self._rcpt_counted, self._rcpt_refused,
                                       callbackArgs=(txn, path))
        return self._rcpt_counted(result, txn, path)

    def _rcpt_counted(self, result: Result, txn: Transaction, path):
        """:meth:`_rcpt_verdict`, a refusal counted by :meth:`_rcpt_refused`."""
        try:
            return self._rcpt_verdict(result, txn, path)
        except SMTPError:
            self._rcpt_refused(Failure())
            raise

    def _rcpt_verdict(self, result: Result, txn: Transaction, path):
        """ACCEPT queues the (possibly rewritten) address, DISCARD answers
        250 and drops it; a recipient nobody accepted is not relayed."""
        error = self.refusal(result)
        if error is not None:
            raise error
        if result.verdict is Verdict.DISCARD:
            txn.notes["discarded"] = txn.notes.get("discarded", 0) + 1
            return Reply.of(250, reply.OK)
        if result.verdict is not Verdict.ACCEPT:
            raise SMTPError(553, reply.NO_RELAY)
        return self._rcpt_limits(result.address or path.address, txn, path)

    def _rcpt_refused(self, failure: Failure) -> Failure:
        """Count refused recipients for MAX_RCPT_ERRCOUNT-style plugins."""
        if failure.check(SMTPError) and failure.value.reply.code >= 500:
            notes = self.session.notes
            notes["rcpt_errors"] = notes.get("rcpt_errors", 0) + 1
        return failure

    def _rcpt_limits(self, address: str, txn: Transaction, path):
        """After the policy, as upstream: MAXRECIPIENTS, then the tarpit."""
        settings = self.settings
        count = len(txn.recipients) + 1
        if settings.maxrcpt and count > settings.maxrcpt:
            self.log.info("qmail-smtpd: pid {pid} {ip} Too many RECIPIENTS: MAIL <{sender}> "
                          "Last RCPT <{rcpt}>", pid=settings.pid, ip=self.session.remote_ip,
                          sender=txn.sender, rcpt=path.address)
            raise SMTPError(557, reply.TOO_MANY_RCPTS)
        if settings.tarpitcount and count >= settings.tarpitcount and settings.tarpitdelay:
            # upstream sleeps; here only this session's reply waits on the clock
            return task.deferLater(self.clock, settings.tarpitdelay, self._rcpt_accepted,
                                   address, txn, path)
        return self._rcpt_accepted(address, txn, path)

    def _rcpt_accepted(self, address: str, txn: Transaction, path):
        if self._lost or self.session.transaction is not txn:
            return None
        txn.recipients.append(address)
        self.apply_envrules("domainqueue", path.address)
        return RCPT_OK

    def apply_envrules(self, kind: str, address: str) -> None:
        """Apply the *kind* envrules matching *address* and re-derive the
        settings; "auth" changes the connection, the others the transaction."""
        if self.rules is None:
            return
        s = self.session
        try:
            changes = self.rules.assignments(kind, s.env, address)
        except ControlFileError as e:   # upstream AM_REGEX_ERR: the rules are skipped
            self.log.warn("{kind} envrules: {error}", kind=kind, error=str(e))
            return
        if not changes:
            return
        env = s.env.apply(changes)
        settings = self.rules.settings(env)
        self.log.info("qmail-smtpd: pid {pid} {ip} {kind} envrules for <{address}>: {changes}",
                      pid=self.settings.pid, ip=s.remote_ip, kind=kind, address=address,
                      changes=",".join(f"{n}={v or ''}" for n, v in changes))
        if kind == "auth":
            s.env = env
            self._settings = settings
        else:
            s.transaction_env(env, settings)

    def smtp_RSET(self, arg: str) -> Reply:
        if arg:
            raise SMTPError(501, reply.PARAM_SYNTAX)
        self.session.reset()
        return Reply.of(250, reply.FLUSHED)

    def smtp_NOOP(self, arg: str) -> Reply:
        if arg:
            raise SMTPError(501, reply.PARAM_SYNTAX)
        return Reply.of(250, reply.OK)

    def smtp_VRFY(self, arg: str) -> Reply:
        return Reply.of(252, reply.VRFY)

    def smtp_HELP(self, arg: str) -> Reply:
        return Reply.of(214, f"This is IndiMail SMTP Version {VERSION}",
                        "This server supports the following commands:",
                        "HELO EHLO RSET NOOP MAIL RCPT DATA "
                        + ("AUTH " if self.auth is not None else "") + "VRFY HELP QUIT")

    def smtp_QUIT(self, arg: str) -> None:
        *lines, last = self.greeting_lines()
        self._send(Reply.of(221, *lines, reply.CLOSING.format(greeting=last)))
        self._discard_input()
        self._close()

    def smtp_DATA(self, arg: str):
        if arg:
            raise SMTPError(501, reply.PARAM_SYNTAX)
        txn = self.session.transaction
        if txn is None:
            raise SMTPError(503, reply.MAIL_FIRST)
        if not txn.recipients and not txn.notes.get("discarded"):
            raise SMTPError(503, reply.RCPT_FIRST)
        if not self.plugins.has("data"):
            return self._open_message()
        return self.hook("data").addCallback(
            lambda result: self._after_hook(result, None) or self._open_message())

    def _open_message(self) -> Reply:
        self._message = self._begin_message()
        self._decoder = DataDecoder(self.settings.databytes, self.settings.allow_bare_lf)
        self._headers = HeaderBlock()
        return Reply.of(354, reply.GO_AHEAD)

    def _begin_message(self):
        """Open the queue message and write our headers (DATA and BDAT)."""
        try:
            message = self.sink.begin(self.session.env, invoked="network",
                                      remote_ip=self.session.remote_ip)
            origin = self.origin_header()
            if origin:
                message.write(origin)
            message.write(self.received_header())
        except Exception:
            self.log.failure("qqt failure")
            self.session.reset()
            raise SMTPError(451, reply.QUEUE_TEMP) from None
        return message

    def origin_header(self) -> bytes | None:
        """``X-Originating-IP: <ip>`` on relayed mail when ``ORIGINIPFIELD``
        (or control ``originipfield``) is on: upstream's qmail-queue adds it
        when RELAYCLIENT or TCPREMOTEINFO is set, right after its Received
        line, which is where it lands here too."""
        s = self.session
        if not self.settings.originipfield or s.remote_ip in ("", "unknown"):
            return None
        if "RELAYCLIENT" not in s.env and not s.env.get("TCPREMOTEINFO") \
                and not s.authenticated:
            return None
        return f"X-Originating-IP: {s.remote_ip}\n".encode("ascii", "replace")

    def received_header(self) -> bytes:
        s, st = self.session, self.settings
        txn = s.transaction
        protocol = utf8.protocol_word(s.protocol_name,
                                      bool(txn is not None and txn.notes.get("smtputf8")))
        cipher = describe(self.transport) if s.tls else None
        if cipher:   # upstream: "(TLSv1.3 TLS_AES_256_GCM_SHA384 encrypted) ESMTPS"
            protocol = f"{cipher} {protocol}"
        protocol += received_note(s)   # "\n  (cert <email>)": tlsclients let it relay
        return smtpd_received(pid=st.pid, local=st.local_host, remote_ip=s.remote_ip,
                              remote_host=s.remote_host, remote_info=s.remote_info,
                              helo=s.helo, protocol=protocol,
                              now=self.clock.seconds(), hide=st.hide_host)

    # -- BDAT (RFC 3030) ---------------------------------------------------------------
    def smtp_BDAT(self, arg: str):
        """A chunk of *size* octets follows the command line, whatever this
        command's answer: refusals are sent once its bytes have been read
        (and thrown away), so none of them is ever taken for a command."""
        args = parse_bdat(arg)
        if args is None:   # the chunk's length is unknown: its bytes cannot be skipped
            self._discard_input()
            raise SMTPError(501, reply.BDAT_SYNTAX, close=True)
        if not self.settings.chunking:
            return self.unknown("BDAT", arg)   # not offered: as upstream, which has no BDAT
        txn = self.session.transaction
        if txn is None:
            return self._read_chunk(args, SMTPError(503, reply.MAIL_FIRST))
        if not txn.recipients and not txn.notes.get("discarded"):
            return self._read_chunk(args, SMTPError(503, reply.RCPT_FIRST))
        if self._bdat is not None:
            return self._read_chunk(args)
        if not self.plugins.has("data"):   # first chunk: the data hook, as DATA
            return self._bdat_open(args)

        def decided(result: Result):
            error = self.refusal(result)
            if error is not None:
                self.session.reset()   # the rest of this message: 503 MAIL first
                return self._read_chunk(args, error)
            return self._bdat_open(args)

        def failed(failure: Failure):
            self.log.failure("data hooks failed", failure)
            self.session.reset()
            return self._read_chunk(args, SMTPError(451, reply.LOCAL_FAILURE))
        return self.hook("data").addCallbacks(decided, failed)

    def _bdat_open(self, args):
        try:
            message = self._begin_message()
        except SMTPError as error:
            return self._read_chunk(args, error)
        self._message = message
        self._bdat = (BdatDecoder(self.settings.databytes), HeaderBlock())
        return self._read_chunk(args)

    def _read_chunk(self, args, error: SMTPError | None = None):
        """Read the chunk announced by *args*; its reply comes at its end."""
        if error is not None and error.close:
            raise error
        chunk = _Chunk(args.size, args.last, error)
        if not args.size:
            return self._chunk_end(chunk)
        self._chunk = chunk
        return None

    def _feed_chunk(self) -> None:
        chunk = self._chunk
        start = self._start
        n = min(chunk.left, len(self._buffer) - start)
        data = bytes(self._buffer[start:start + n])
        self._start = start + n
        chunk.left -= n
        if chunk.error is None and self._bdat is not None:
            decoder, headers = self._bdat
            out = decoder.feed_chunk(data)
            if decoder.overflow:   # free the disk now; the 552 comes after LAST
                self._abort_message()
            elif out:
                headers.feed(out)
                self._write(out)
        if not chunk.left:
            self._chunk = None
            self._run(self._chunk_end, chunk)

    def _chunk_end(self, chunk: "_Chunk"):
        if chunk.error is not None:
            raise chunk.error
        if not chunk.last:
            return Reply.of(250, reply.BDAT_OK.format(size=chunk.size))
        decoder, headers = self._bdat
        self._bdat = None
        tail = decoder.finish()
        if tail and self._message is not None:
            headers.feed(tail)
            self._write(tail)
        self._decoder, self._headers = decoder, headers
        return self._end_data()   # the queue hook and commit, as at DATA's end

    def _bdat_abort(self) -> None:
        """Abandon a BDAT message (RSET, HELO/EHLO, timeout, lost connection)."""
        if self._bdat is not None:
            self._bdat = None
            self._abort_message()

    # -- DATA -------------------------------------------------------------------------
    def _feed_data(self) -> None:
        decoder = self._decoder
        chunk, end = decoder.feed(bytes(self._buffer[self._start:]))
        self._start = len(self._buffer) if end is None else self._start + end
        if decoder.bare_lf:
            self.log.info("Bare LF received from {ip}", ip=self.session.remote_ip)
            self._end_message()
            self._discard_input()
            self._send(Reply.of(451, reply.BARE_LF))
            self._close()
            return
        if decoder.overflow:   # free the disk now; the 552 comes at the end
            self._abort_message()
        elif chunk:
            self._headers.feed(chunk)
            self._write(chunk)
        if end is not None:
            self._run(self._end_data)

    def _write(self, chunk: bytes) -> None:
        message = self._message
        message.write(chunk)
        if message.pending_bytes > getattr(message, "high_water", HIGH_WATER):
            self._pause("queue")
            message.wait_for_drain().addBoth(lambda _: self._unpause("queue"))

    def _abort_message(self) -> None:
        """Throw away the message being received (it was never acknowledged)."""
        message, self._message = self._message, None
        if message is not None:
            d = defer.maybeDeferred(message.abort)
            d.addErrback(lambda f: self.log.failure("aborting a message failed", f))

    def _end_message(self) -> None:
        """Leave DATA mode without queueing."""
        self._abort_message()
        self._decoder = None
        self._headers = None

    def _end_data(self):
        decoder, message, headers = self._decoder, self._message, self._headers
        self._decoder = self._message = self._headers = None
        txn = self.session.transaction
        self.session.messages += 1
        txn.size = decoder.size
        txn.headers = headers.fields() if headers is not None else []
        if decoder.hops >= self.settings.maxhops or decoder.overflow:
            if decoder.hops < self.settings.maxhops and self.plugins.has("oversize"):
                # DATABYTES_NOTIFY: told before the reset, in the transaction's env
                self.hook("oversize").addErrback(
                    lambda f: self.log.failure("oversize hooks failed", f))
            self.session.reset()
            return self._refuse_data(decoder, message, txn)
        if not self.plugins.has("queue"):
            self.session.reset()
            return self._commit(txn, message, decoder.size)
        d = self.hook("queue")

        def decided(result: Result):
            self.session.reset()
            error = self.refusal(result)
            if error is None and result.verdict is Verdict.DISCARD:
                txn.discard = True
            if error is not None:
                self._message = message
                self._abort_message()
                raise error
            return self._commit(txn, message, decoder.size)

        def failed(failure: Failure):
            self.session.reset()
            self._message = message
            self._abort_message()
            return failure
        return d.addCallbacks(decided, failed)

    def _commit(self, txn: Transaction, message, size: int):
        """Queue the message, or drop it when plugins discarded it all."""
        if txn.discard or not txn.recipients:
            self._message = message
            self._abort_message()
            self.log.info("qmail-smtpd: pid {pid} {ip} discarded: MAIL from <{sender}>",
                          pid=self.settings.pid, ip=self.session.remote_ip, sender=txn.sender)
            return Reply.of(250, reply.QUEUED.format(when=int(self.clock.seconds()), msgid=0))
        d = defer.maybeDeferred(message.finish, txn.sender, list(txn.recipients))
        d.addCallbacks(lambda msgid: self._queued(txn, msgid, size), self._queue_failed)
        return d

    def _refuse_data(self, decoder, message, txn: Transaction):
        if message is not None:
            self._message = message
            self._abort_message()
        if decoder.hops >= self.settings.maxhops:
            raise SMTPError(554, reply.TOO_MANY_HOPS)
        for rcpt in txn.recipients or [""]:   # upstream: one line per recipient
            self.log.info("qmail-smtpd: pid {pid} {ip} data size exceeded: MAIL from <{sender}> "
                          "RCPT <{rcpt}> Size: {size}", pid=self.settings.pid,
                          ip=self.session.remote_ip, sender=txn.sender, rcpt=rcpt,
                          size=decoder.size)
        raise SMTPError(552, reply.SIZE_EXCEEDED)

    def _queued(self, txn: Transaction, msgid: int, size: int) -> Reply:
        when = int(self.clock.seconds())
        self.log_transaction(txn, size, msgid)
        return Reply.of(250, reply.QUEUED.format(when=when, msgid=msgid))

    def log_transaction(self, txn: Transaction, size: int, msgid: int) -> None:
        """One line per recipient in upstream's ``log_trans()`` wording."""
        s = self.session
        tls = "Yes" if s.tls else "No"
        for rcpt in txn.recipients:
            auth = f"{s.authenticated}: " if s.authenticated else ""
            self.log.info(
                "qmail-smtpd: pid {pid} from {ip} HELO <{helo}> MAIL from <{sender}> "
                "RCPT <{rcpt}> AUTH <{auth}> Size: {size} TLS={tls} qp {msgid}",
                pid=self.settings.pid, ip=s.remote_ip, helo=s.helo or "", sender=txn.sender,
                rcpt=rcpt, auth=auth + ("local-rcpt" if self._local(rcpt) else "auth-ip/pop"),
                size=size, tls=tls, msgid=msgid)

    def _local(self, rcpt: str) -> bool:
        relay = self.plugins.find("rcpthosts")
        check = getattr(relay, "in_rcpthosts", None)
        try:
            return bool(check(rcpt)) if check else False
        except Exception:
            return False

    def _queue_failed(self, failure: Failure) -> Reply:
        if failure.check(QueueError):
            code, code_x, text = failure.value.smtp_reply
            self.log.info("qq error: {text}", text=text)
            return enhanced.with_code(Reply.of(code, text), code_x)
        self.log.failure("queueing failed", failure)
        return Reply.of(451, reply.QUEUE_TEMP)


class _Chunk:
    """The BDAT chunk being read: octets still to come, LAST, the refusal
    to send once it has been read."""

    __slots__ = ("size", "left", "last", "error")

    def __init__(self, size: int, last: bool, error: SMTPError | None):
        self.size = size
        self.left = size
        self.last = last
        self.error = error
