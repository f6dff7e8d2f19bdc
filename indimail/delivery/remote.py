"""Remote delivery: qmail-remote's job for one recipient.

The route comes from ``qmtproutes``/``QMTPROUTE`` (QMTP) or
``smtproutes``/``SMTPROUTE`` or, without one, from the domain's MX records
(A and AAAA, CNAMEs followed; the recipient's domain is rewritten to its
canonical name unless ``DISABLE_CNAME_LOOKUP``).  Addresses are tried in
order, skipping those the queue's ``lock/tcpto`` says are down, until one
answers its greeting, from the source address ``OUTGOINGIP``,
``outgoingip`` or ``domainbindings`` name.  Then EHLO (or HELO), STARTTLS
(verified for destinations listed in ``tlsdestinations``, opportunistic
otherwise, none for ``notlshosts``), SMTP AUTH with the route's
credentials when ``AUTH_SMTP`` is set (:mod:`.saslclient`), MAIL FROM
(BATV-signed with ``batvkey``; ``BODY=8BITMIME`` and ``SMTPUTF8`` as the
message needs, :mod:`.msgscan`), RCPT TO and DATA (in one write when the
peer offers PIPELINING), streaming the queued message from disk with
CRLF line ends and dot-stuffing.  Replies map to qmail-remote's results and
report texts: 2xx success, 5xx failure, 4xx and lost connections deferral.
``QMAILREMOTE`` replaces all of this with a program; ``ONSUCCESS_REMOTE``,
``ONFAILURE_REMOTE`` and ``ONTEMPORARY_REMOTE`` run after it
(:mod:`.remotehooks`).

Everything a delivery reads from disk before it connects (envrules, filter,
settings, the message itself when small) is read in one trip to a thread
(:meth:`RemoteDelivery.prepare`).  In the send service a connection whose
transaction succeeded waits in a :class:`~.conncache.ConnectionCache` for
the next delivery to the same place instead of saying QUIT.
"""

from __future__ import annotations

import base64
import copy
import os
import random
from dataclasses import dataclass
from typing import Mapping

from pathlib import Path

from twisted.internet import endpoints

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.config.home import Home
from indimail.delivery import batv, mx, remotehooks
from indimail.delivery import filter as dfilter
from indimail.delivery.agent import DeliveryAgent, split_address
from indimail.delivery.lines import quote2
from indimail.delivery.result import (
    DEFERRAL, FAILURE, SUCCESS, DeliveryError, DeliveryResult, permanent, temporary)
from indimail.delivery import msgscan, saslclient
from indimail.delivery.conncache import ConnectionCache, Idle, Key
from indimail.send.batch import BatchRunner
from indimail.delivery.smtpclient import (
    DataEncoder, Reply, SMTPClientProtocol, b64, ehlo_keywords, xtext)
from indimail.delivery.qmtpclient import (
    QMTPClientProtocol, QMTPProtocolError, envelope, message_header)
from indimail.delivery.qmtproutes import route_for
from indimail.delivery.smtproutes import PORT_SMTP, Route
from indimail.delivery.tcpto import MAX_TOLERANCE, MIN_PENALTY, TcpTimeouts
from indimail.delivery.tlsdestinations import TLSPolicy, VerifyingCreator, tls_policy

CHUNK = 65536
INLINE_MAX = 65536   # a message this small is read once, before connecting, and sent from memory
READ_TRIPS, READ_BATCH = 2, 16   # deliveries' disk reads: trips at once, reads per trip
MAX_AUTH_STEPS = 8   # no mechanism here needs more 334 rounds; stops a looping server
BIND_IP = "0.0.0.0"


def outsafe(text: str) -> str:
    """qmail-remote's ``outsafe``: unprintable characters become ``?``."""
    return "".join(ch if 33 <= ord(ch) <= 126 else "?" for ch in text)


_UNBOUND = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Settings:
    """What one delivery needs from the control files and environment."""

    route: Route | None
    helo: str
    timeout_connect: int
    timeout_remote: int
    bind_ip: str | None = None      # outgoingip / OUTGOINGIP / domainbindings
    auth: str | None = None         # AUTH_SMTP: None = no AUTH, "" = automatic
    starttls: bool = True           # False for notlshosts
    penalty: int = MIN_PENALTY      # tcpto: seconds a failing address is skipped
    tolerance: int = MAX_TOLERANCE  # tcpto: errors this close count once
    batv_sender: str | None = None  # the BATV-signed sender, when signing


def same_family(a: str, b: str) -> bool:
    return (":" in a) == (":" in b)


def tls_failure(exc: Exception) -> str | None:
    """OpenSSL's reasons when *exc* is a TLS error, else None."""
    from OpenSSL import SSL
    if not isinstance(exc, SSL.Error):
        return None
    reasons = [str(item[-1]) for item in (exc.args[0] if exc.args else [])
               if isinstance(item, tuple)]
    return ", ".join(reasons) or str(exc) or "handshake failed"


@dataclass
class _Message:
    """The queued message as one delivery sends it."""

    path: object
    size: int | None               # None: the file could not be read
    content: bytes | None = None   # the whole message when it is small
    high: bool | None = False      # 8-bit bytes (queue extra headers included); None: not read yet
    utf8: bool = False             # a Received field says "with UTF8..."


def read_message(mess, qqeh: str) -> _Message:
    """The message's size and what MAIL FROM must declare for it
    (:mod:`.msgscan`), and its bytes when they fit :data:`INLINE_MAX`; a
    larger message's body is scanned for 8-bit bytes only when a peer
    offers 8BITMIME (:meth:`RemoteDelivery._eight_bit`).  Blocking."""
    extra = qqeh.encode("utf-8", "surrogateescape")
    try:
        with open(mess, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size <= INLINE_MAX:
                content = source.read()
                return _Message(mess, len(content), content, *msgscan.scan_bytes(content, extra))
            chunks = iter(lambda: source.read(CHUNK), b"")
            _high, utf8 = msgscan.scan_chunks(chunks, extra, eight_bit=False)
            return _Message(mess, size, None, None, utf8)
    except OSError:
        return _Message(mess, None)


@dataclass
class _Prepared:
    """What one delivery reads before it talks to the network, in one
    trip to a thread (see :meth:`RemoteDelivery.prepare`)."""

    agent: "RemoteDelivery"             # the agent, or a copy with the envrules' env
    filter: tuple | None = None         # (command, environment): FILTERARGS applies
    hook: str | None = None             # QMAILREMOTE
    settings: Settings | None = None
    message: _Message | None = None


class _Dropped(Exception):
    """The connection died or timed out while waiting on the peer."""


class _Stale(Exception):
    """A cached connection was closed or refused before the transaction."""


class _NextMX(Exception):
    """The greeting said 4xx: try the next address."""


class _Session:
    """State of one SMTP conversation, for the report texts."""

    def __init__(self, ip: str, sender: str, recipient: str, tls: bool = False,
                 attempt: _Attempt | None = None):
        self.ip = ip
        self.attempt = attempt or _Attempt()
        self.policy = None             # TLSPolicy when the peer must be verified
        self.creator = None            # its VerifyingCreator once TLS started
        self.partner = ip              # the name the certificate must carry
        self.tcpto_note = ""           # "tcpto interval N " when the table is on
        self.protocol = "SMTPS" if tls else "SMTP"
        self.sender = sender
        self.recipient = recipient
        self.rcpt_prefix = ""          # "From: <s> RCPT: <r> " once RCPT was taken
        self.critical = False          # the final dot was sent
        self.in_greeting = False
        self.tls = tls                 # SMTPS or STARTTLS done
        self.handshake = False         # STARTTLS sent, TLS not proven yet
        self.reused = False            # on a cached connection (conncache)

    def said(self, reply: Reply | None) -> str:
        if reply is None or not reply.text:
            return ""
        return "\nRemote host said: " + reply.text

    def quit(self, status: str, text: str, reply: Reply | None) -> DeliveryError:
        return DeliveryError(status, self.rcpt_prefix + text + "." + self.said(reply))

    def dropped(self) -> DeliveryError:
        text = f"Connected to {self.ip} but connection died. "
        if self.critical:
            text += "Possible duplicate! "
        elif self.in_greeting:
            text += "Will try alternate MX. " + self.tcpto_note
        return temporary(self.rcpt_prefix + text + "(#4.4.2)")


class _LazyResolver:
    """Creates the system resolver when a lookup is first made."""

    def __init__(self, owner: "RemoteDelivery"):
        self._owner = owner

    def __getattr__(self, name):
        return getattr(self._owner._system_resolver(), name)


class _Attempt:
    """What the ON*_REMOTE scripts learn of the last conversation."""

    def __init__(self):
        self.code: int | None = None    # the last reply's code (None: none came)
        self.text: str | None = None
        self.host: str | None = None    # the address connected to (SMTPHOST)
        self.qmtp = False


class _QueueBound(DeliveryAgent):
    """One delivery's view of a RemoteDelivery with its queue's tcpto."""

    channel = "remote"
    program = "qmail-remote"
    filters_in_run = True   # the owner's prepare() chooses the filter

    def __init__(self, owner: "RemoteDelivery", tcpto):
        self.owner, self.tcpto = owner, tcpto
        self.reactor, self.threadpool = owner.reactor, owner.threadpool

    def __getattr__(self, name):
        return getattr(self.owner, name)   # env, control, home ... of the agent

    async def _run(self, mess, sender, recipient, qqeh):
        return await self.owner._run(mess, sender, recipient, qqeh, self.tcpto)


def _domain_of(recipient: str) -> str:
    """The part after the last ``@``; qmail-remote's host argument is the
    whole address when it has none."""
    return recipient[recipient.rfind("@") + 1:] if "@" in recipient else recipient


def _call(f, *args):
    """A :class:`BatchRunner` job that is any blocking call."""
    return f(*args)


def _partner(target) -> str:
    """The name a verified certificate must carry: the MX or relay name,
    or the address for a literal."""
    return mx.literal(target.name) or target.name.rstrip(".")


class RemoteDelivery(DeliveryAgent):
    """Delivers one recipient of one queued message over SMTP."""

    channel = "remote"
    program = "qmail-remote"

    def __init__(self, home: Home, control: ControlFiles, *, reactor=None,
                 env: Mapping[str, str] | None = None, resolver=None,
                 threadpool=None, rng: random.Random | None = None, clock=None,
                 connection_cache: ConnectionCache | None = None):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.home = home
        self.control = control
        self.reactor = reactor
        self.env = Environment(os.environ if env is None else env)
        self._resolver = resolver
        self.threadpool = threadpool
        self.rng = rng or random.Random()
        self.clock = clock or reactor  # times out replies (timeoutremote)
        self.cache = connection_cache  # idle SMTP connections for the next delivery
        # the reads of concurrent deliveries share trips to a thread
        self._reads = BatchRunner(self._thread, _call, parallel=READ_TRIPS, limit=READ_BATCH)

    @property
    def resolver(self):
        """The injected resolver, else the system's (``/etc/resolv.conf``),
        made on first use so literal addresses never need one."""
        if self._resolver is None:
            return _LazyResolver(self)
        return self._resolver

    def _system_resolver(self):
        if self._resolver is None:
            from twisted.names import client
            # RESOLVCONF names another resolv.conf (its nameserver lines)
            self._resolver = client.Resolver(resolv=self.env.get("RESOLVCONF")
                                             or "/etc/resolv.conf", reactor=self.reactor)
        return self._resolver

    # -- settings (read files: called in a thread) ----------------------------

    def settings(self, domain: str, sender: str) -> Settings:
        route = route_for(self.env, self.control, domain, sender)
        helo = (self.control.value("helohost") or self.control.value("me")
                or "localhost")
        bind_ip = self.outgoing_ip(domain)
        binding = self.domain_binding(sender)
        if binding is not None:  # qmail-remote: bind and HELO as the sender's domain
            bind_ip, helo = binding
        auth = self.env.get("AUTH_SMTP")
        if route is None or route.credentials is None:
            auth = None
        penalty = self.env.int("MIN_PENALTY", MIN_PENALTY)
        tolerance = self.env.int("MAX_TOLERANCE", MAX_TOLERANCE)
        if route is not None:
            penalty = route.penalty if route.penalty is not None else penalty
            tolerance = route.tolerance if route.tolerance is not None else tolerance
        signed = batv.sign_for(sender, domain, self.env, self.control, self.clock.seconds())
        return Settings(route, helo, self.control.int("timeoutconnect", 60),
                        self.control.int("timeoutremote", 1200),
                        None if (bind_ip or "") in _UNBOUND else bind_ip, auth,
                        not self.no_tls(domain, route.host if route else domain),
                        penalty, tolerance, signed if signed != sender else None)

    def no_tls(self, domain: str, host: str) -> bool:
        """qmail-remote's ``notlshosts``: the recipient domain listed in the
        control file (or the file ``NOTLSHOSTS`` names), or a file
        ``certs/notlshosts/<host>`` for the domain or relay: no STARTTLS."""
        listed = {line.strip().lower()
                  for line in self.control.lines(self.env.get("NOTLSHOSTS") or "notlshosts")}
        if domain.lower() in listed:
            return True
        folder = self.home.certs / "notlshosts"
        return any((folder / name).exists() for name in {domain, host} if name and "/" not in name)

    def outgoing_ip(self, domain: str) -> str | None:
        """``OUTGOINGIP``, else a random line of ``outgoingip.<domain>`` or
        ``outgoingip``."""
        value = self.env.get("OUTGOINGIP")
        if value:
            return value.strip()
        for name in (f"outgoingip.{domain.lower()}", "outgoingip"):
            lines = [line for line in self.control.lines(name) if line.strip()]
            if lines:
                return self.rng.choice(lines).strip()
        return None

    def domain_binding(self, sender: str) -> tuple[str, str] | None:
        """``domainbindings`` (or the file ``DOMAINBINDINGS`` names):
        ``sender:ip`` or ``domain:ip`` lines, the whole sender then its
        domain and parent domains, then the empty key.  Returns (ip, helo)."""
        if not sender or "@" not in sender:
            return None
        table: dict[str, str] = {}
        for line in self.control.lines(self.env.get("DOMAINBINDINGS") or "domainbindings"):
            key, sep, ip = line.strip().partition(":")
            if sep:
                table.setdefault(key.lower(), ip.strip())
        if not table:
            return None
        sender_domain = sender[sender.rfind("@") + 1:]
        ip = table.get(sender.lower())
        lowered = sender_domain.lower()
        for i in range(len(lowered) + 1):
            if ip:
                break
            if i == 0 or i == len(lowered) or lowered[i] == ".":
                ip = table.get(lowered[i:])
        return (ip, sender_domain) if ip else None

    # -- entry points ---------------------------------------------------------

    async def _deliver(self, queue, msgid, sender, recipient, qqeh) -> DeliveryResult:
        # the base class's error handling, with the queue's tcpto passed on
        bound = _QueueBound(self, self.tcpto_for(queue))
        return await DeliveryAgent._deliver(bound, queue, msgid, sender, recipient, qqeh)

    def tcpto_for(self, queue) -> TcpTimeouts | None:
        """The queue's ``lock/tcpto`` (``QUEUEDIR``'s when the message does
        not come from a queue); None turns the downed-host table off."""
        lock_dir = getattr(queue, "lock_dir", None)
        if lock_dir is not None:
            return TcpTimeouts(lock_dir / "tcpto")
        if self.env.get("QUEUEDIR"):
            return TcpTimeouts(Path(self.env["QUEUEDIR"]) / "lock" / "tcpto")
        return None

    def prepare(self, mess, sender: str, recipient: str, qqeh: str,
                filtered: bool = False) -> _Prepared:
        """Everything one delivery reads from disk before it connects, so
        that it costs one trip to a thread: its environment
        (``fromd.envrules`` and ``rcpt.envrules`` may change routes, hooks,
        BATV, OUTGOINGIP... for this sender and recipient), the delivery
        filter unless *filtered*, ``QMAILREMOTE``, the settings, and the
        message (:func:`read_message`).  Blocking."""
        env = self.delivery_env(sender, recipient)
        agent = self
        if env is not self.env:
            agent = copy.copy(self)
            agent.env = env
        if not filtered:
            fdomain = split_address(recipient)[1]
            command = dfilter.filter_command(env, self.control, fdomain, self.channel)
            if command is not None:
                return _Prepared(agent, filter=(command, dfilter.filter_environment(
                    env, fdomain, recipient, qqeh, sender, recipient)))
        hook = env.get("QMAILREMOTE")
        if hook:
            return _Prepared(agent, hook=hook)
        domain = _domain_of(recipient)
        return _Prepared(agent, settings=agent.settings(domain, sender),
                         message=read_message(mess, qqeh))

    async def _run(self, mess, sender: str, recipient: str, qqeh: str,
                   tcpto: TcpTimeouts | None = None, filtered: bool = False) -> DeliveryResult:
        """One delivery: :meth:`prepare`, then the filter (whose output is
        delivered in its place) or the SMTP/QMTP conversation."""
        prepared = await self._reads.submit(self.prepare, mess, sender, recipient, qqeh,
                                            filtered)
        if prepared.filter is not None:
            return await self._through_filter(
                prepared.filter, mess,
                lambda path: self._run(path, sender, recipient, qqeh, tcpto, True))
        return await prepared.agent._run_prepared(prepared, mess, sender, recipient, qqeh,
                                                  tcpto)

    async def _run_prepared(self, prepared: _Prepared, mess, sender: str, recipient: str,
                            qqeh: str, tcpto: TcpTimeouts | None = None) -> DeliveryResult:
        domain = _domain_of(recipient)
        if prepared.hook:
            return await self._run_hook(prepared.hook, mess, sender, recipient, qqeh, domain)
        attempt = _Attempt()
        try:
            result = await self._remote(prepared, sender, recipient, qqeh, domain, tcpto,
                                        attempt)
        except DeliveryError as exc:
            result = exc.result
        if any(self.env.get(name) for name in remotehooks.SCRIPTS.values()):
            size = prepared.message.size
            argv = remotehooks.remote_argv(domain, sender, qqeh, size or 0, recipient)
            result = await remotehooks.run_result_script(
                self.reactor, self.env, argv, str(self.home.path), result, attempt.code,
                attempt.text, attempt.host, attempt.qmtp)
        return result

    async def _run_hook(self, program: str, mess, sender: str, recipient: str, qqeh: str,
                        domain: str) -> DeliveryResult:
        """``QMAILREMOTE``: the program delivers, we read its report."""
        try:
            fd = await self._thread(remotehooks.open_message, mess)
        except OSError:
            raise temporary("Unable to read message. (#4.3.0)") from None
        try:
            size = os.fstat(fd).st_size
            argv = remotehooks.remote_argv(domain, sender, qqeh, size, recipient)
            return await remotehooks.run_qmailremote(self.reactor, program, argv, self.env,
                                                     str(self.home.path), fd)
        finally:
            os.close(fd)

    async def _remote(self, prepared: _Prepared, sender: str, recipient: str, qqeh: str,
                      domain: str, tcpto: TcpTimeouts | None, attempt: "_Attempt"
                      ) -> DeliveryResult:
        settings, message = prepared.settings, prepared.message
        route, helo = settings.route, settings.helo
        t_connect, t_remote = settings.timeout_connect, settings.timeout_remote
        host = route.host if route else domain
        port = route.port if route else PORT_SMTP
        qmtp = attempt.qmtp = bool(route and route.protocol == "qmtp")
        kind = "QMTP" if qmtp else "SMTP"
        try:
            if route:
                targets = await mx.resolve_relay(self.resolver, host)
            else:
                targets = await mx.resolve_mx(self.resolver, host, self.rng)
        except mx.DNSHardError:
            raise permanent(f"Sorry, I couldn't find any host named {outsafe(host)}. (#5.1.2)")
        except mx.DNSSoftError:
            raise temporary("Sorry, I couldn't find any host by that name. (#4.1.2)")
        if not targets:
            raise permanent("Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)")
        if route is None and "DISABLE_CNAME_LOOKUP" not in self.env and "@" in recipient:
            try:
                canonical = await mx.canonical(self.resolver, domain)
            except mx.DNSSoftError:
                raise temporary("CNAME lookup failed temporarily. (#4.4.3)") from None
            if canonical.lower() != domain.lower():
                recipient = recipient[:recipient.rfind("@") + 1] + canonical
        if message.size is None:
            raise temporary("Unable to read message. (#4.3.0)")
        if settings.batv_sender is not None:
            sender = settings.batv_sender
        penalty, tolerance = settings.penalty, settings.tolerance
        if penalty == 0:
            tcpto = None   # a route's penalty 0 turns the table off
        tried: list[str] = []
        last_drop: DeliveryError | None = None
        for target in targets:
            down = listed = False
            policy = None
            if tcpto is not None or not qmtp:
                down, listed, policy = await self._reads.submit(
                    self._target_state, tcpto, target, domain, port, settings, qmtp, penalty,
                    int(self.clock.seconds()))
            if down:
                self.log.info("tcpto: skipping {address}", address=target.address)
                continue
            tried.append(target.address)
            attempt.host = target.address
            tls = bool(route and route.implicit_tls)
            key = None
            if self.cache is not None and not qmtp:
                key = self._cache_key(target, port, settings, tls, policy)
                async def clear_tcpto(address=target.address):
                    if listed:
                        await self._tcpto_mark(tcpto, address, False, tolerance)
                result = await self._on_cached(key, target, sender, recipient, policy, message,
                                               qqeh, settings, attempt, clear_tcpto)
                if result is not None:
                    return result
            creator = None
            if tls and isinstance(policy, TLSPolicy):
                creator = VerifyingCreator(policy, _partner(target))
            bind = settings.bind_ip
            bind = bind if bind is not None and same_family(bind, target.address) else None
            proto = await self._open(target.address, port, t_connect, tls, bind, creator, qmtp)
            if proto is None:
                await self._tcpto_mark(tcpto, target.address, True, tolerance)
                continue
            if listed:   # a success clears the address's record
                await self._tcpto_mark(tcpto, target.address, False, tolerance)
            session = _Session(target.address, sender, recipient, tls, attempt)
            session.policy, session.creator = policy, creator
            session.partner = _partner(target)
            session.tcpto_note = f"tcpto interval {tolerance} " if tcpto is not None else ""
            parked = False
            try:
                if qmtp:
                    return await self._qmtp(proto, session, message, qqeh, t_remote)
                if creator is not None:
                    await self._verify_implicit(proto, session, t_remote)
                opened = await self._open_session(proto, session, helo, t_remote, settings)
                result = await self._transaction(proto, session, opened, message, qqeh,
                                                 t_remote, settings)
                parked = self._park_or_quit(key, opened)
                return result
            except _NextMX:
                await self._tcpto_mark(tcpto, target.address, True, tolerance)
                continue
            except DeliveryError as exc:
                if session.in_greeting and exc.result.status == DEFERRAL:
                    await self._tcpto_mark(tcpto, target.address, True, tolerance)
                    last_drop = exc  # died in the greeting: try the next address
                    continue
                raise
            finally:
                if not parked:
                    proto.close()
        if last_drop is not None:
            raise last_drop
        if not tried:
            raise temporary(f"Sorry, I wasn't able to establish a {kind} connection for "
                            f"{host}. (#4.4.1)")
        bound = "" if qmtp else f" bind IP [{settings.bind_ip or BIND_IP}]"
        raise temporary(f"Sorry, I wasn't able to establish a {kind} connection for {host} "
                        f"to {','.join(tried)} port {port}{bound}. (#4.4.1)")

    async def _tcpto_mark(self, tcpto, address: str, failed: bool, tolerance: int) -> None:
        if tcpto is None:
            return
        try:
            await self._thread(tcpto.record, address, failed, tolerance,
                               int(self.clock.seconds()))
        except OSError as exc:
            self.log.warn("tcpto: {error}", error=str(exc))

    def _target_state(self, tcpto, target, domain: str, port: int, settings: Settings,
                      qmtp: bool, penalty: int, now: int):
        """(down, listed, TLS policy) of one address, read in one trip:
        the queue's ``lock/tcpto`` entry and, for SMTP, :meth:`tls_policy`.
        Blocking."""
        down = listed = False
        if tcpto is not None:
            down, listed = tcpto.check(target.address, penalty, now, self.rng)
            if down:
                return down, listed, None
        return down, listed, (None if qmtp else self.tls_policy(target, domain, port, settings))

    def tls_policy(self, target, domain: str, port: int, settings: "Settings"):
        """TLSPolicy, False (no TLS) or None (opportunistic).  Reads files."""
        if not settings.starttls:
            return False
        return tls_policy(self.env, self.control, self.home.certs, _partner(target), domain,
                          port)

    async def _open(self, address: str, port: int, timeout: int, tls: bool,
                    bind: str | None, creator, qmtp: bool):
        """Connect, keeping the older ``_connect`` hook for tests."""
        if qmtp or creator is not None:
            return await self._connect_with(address, port, timeout, bind, creator,
                                            QMTPClientProtocol() if qmtp else
                                            SMTPClientProtocol())
        if bind is not None:
            return await self._connect(address, port, timeout, tls, bind)
        return await self._connect(address, port, timeout, tls)

    async def _connect_with(self, address: str, port: int, timeout: int, bind, creator,
                            proto):
        bind_address = (bind, 0) if bind else None
        cls = endpoints.TCP6ClientEndpoint if ":" in address else endpoints.TCP4ClientEndpoint
        endpoint = cls(self.reactor, address, port, timeout=timeout, bindAddress=bind_address)
        if creator is not None:
            endpoint = endpoints.wrapClientTLS(creator, endpoint)
        try:
            return await endpoints.connectProtocol(endpoint, proto)
        except Exception as exc:
            self.log.info("connect to {address}:{port} failed: {error}",
                          address=address, port=port, error=str(exc))
            return None

    async def _connect(self, address: str, port: int, timeout: int, tls: bool = False,
                       bind: str | None = None):
        bind_address = (bind, 0) if bind else None
        if ":" in address:
            endpoint = endpoints.TCP6ClientEndpoint(self.reactor, address, port, timeout=timeout,
                                                    bindAddress=bind_address)
        else:
            endpoint = endpoints.TCP4ClientEndpoint(self.reactor, address, port, timeout=timeout,
                                                    bindAddress=bind_address)
        if tls:
            # SMTPS (port 465): TLS from the first byte; like qmail-remote
            # without tlsdestinations, the peer's certificate is not verified.
            from twisted.internet import ssl
            endpoint = endpoints.wrapClientTLS(ssl.CertificateOptions(), endpoint)
        try:
            return await endpoints.connectProtocol(endpoint, SMTPClientProtocol())
        except Exception as exc:
            self.log.info("connect to {address}:{port} failed: {error}",
                          address=address, port=port, error=str(exc))
            return None

    async def _reply(self, proto: SMTPClientProtocol, session: _Session, timeout: int) -> Reply:
        d = proto.next_reply()
        d.addTimeout(timeout, self.clock)
        try:
            reply = await d
            if isinstance(reply, Reply):
                session.attempt.code, session.attempt.text = reply.code, reply.text
            elif hasattr(reply, "status"):
                session.attempt.text = reply.text
            return reply
        except Exception as exc:
            proto.abort()
            if session.handshake and tls_failure(exc):
                raise temporary(f"TLS connect failed: {tls_failure(exc)}; "
                                f"connected to {session.ip}.") from None
            raise session.dropped() from None

    async def _drain(self, proto: SMTPClientProtocol, session: _Session, timeout: int):
        d = proto.drained()
        d.addTimeout(timeout, self.clock)
        try:
            await d
        except Exception:
            proto.abort()
            raise session.dropped() from None

    def _cache_key(self, target, port: int, settings: Settings, tls: bool, policy) -> Key:
        route = settings.route
        return Key(target.address, port, settings.bind_ip, settings.helo, tls, settings.starttls,
                   policy, _partner(target), settings.auth,
                   route.credentials if route is not None else None,
                   frozenset(m for m, var in saslclient.DISABLE.items() if var in self.env),
                   "SECURE_AUTH" in self.env)

    async def _on_cached(self, key: Key, target, sender: str, recipient: str, policy,
                         message: _Message, qqeh: str, settings: Settings,
                         attempt: _Attempt, clear_tcpto) -> DeliveryResult | None:
        """The transaction on an idle connection to the same place, when the
        cache has one; None when it has none or the one it had turned out
        stale (the caller then connects afresh, and what the stale one said
        is forgotten).  Once the peer answered MAIL, ``clear_tcpto()`` runs
        as it does for a new connection that was accepted."""
        while True:
            idle = self.cache.take(key)
            if idle is None:
                return None
            session = _Session(target.address, sender, recipient, idle.tls, attempt)
            session.protocol, session.policy = idle.protocol, policy
            session.partner, session.reused = _partner(target), True
            proto, parked = idle.proto, False
            kept = attempt.code, attempt.text
            try:
                result = await self._transaction(proto, session, idle, message, qqeh,
                                                 settings.timeout_remote, settings)
                parked = self._park_or_quit(key, idle)
                return result
            except _Stale:
                attempt.code, attempt.text = kept
                continue
            finally:
                if not parked:
                    proto.close()
                if not session.reused:   # it got past MAIL: the host is up
                    await clear_tcpto()

    def _park_or_quit(self, key: Key | None, opened: Idle) -> bool:
        """After a transaction: the connection waits in the cache for the
        next delivery with *key*, or says QUIT; whether it was parked."""
        if key is not None and self.cache.put(key, opened):
            return True
        opened.proto.command("QUIT")
        return False

    async def _open_session(self, proto, session: _Session, helo: str, timeout: int,
                            settings: Settings | None = None) -> Idle:
        """Greeting, EHLO (or HELO) and STARTTLS: the connection ready for
        a transaction, with what the peer offered."""
        ip = session.ip
        session.in_greeting = True
        reply = await self._reply(proto, session, timeout)
        session.in_greeting = False
        if 500 <= reply.code < 600:
            raise self._quit(proto, session, FAILURE, f"Connected to {ip} but greeting failed", reply)
        if 400 <= reply.code < 500:
            proto.command("QUIT")
            raise _NextMX()
        if reply.code != 220:
            raise self._quit(proto, session, DEFERRAL, f"Connected to {ip} but greeting failed", reply)

        reply, esmtp = await self._ehlo(proto, session, helo, timeout)
        keywords = ehlo_keywords(reply) if esmtp else {}
        policy = session.policy if isinstance(session.policy, TLSPolicy) else None
        starttls = (settings is None or settings.starttls) and session.policy is not False
        offered = esmtp and "STARTTLS" in keywords
        if policy is not None and not session.tls and not offered:
            raise self._quit(proto, session, DEFERRAL, f"No TLS achieved while {policy.label} "
                             f"exists; connecting to {ip}", None)
        if starttls and not session.tls and offered:
            proto.command("STARTTLS")
            reply = await self._reply(proto, session, timeout)
            if reply.code != 220 and policy is not None:
                raise self._quit(proto, session, DEFERRAL, f"STARTTLS rejected while "
                                 f"{policy.label} exists; connecting to {ip}", reply)
            options = (VerifyingCreator(policy, session.partner) if policy is not None
                       else self._tls_options())
            if reply.code == 220 and proto.start_tls(options):
                session.tls = session.handshake = True
                if policy is not None:
                    session.creator = options
                    await self._verify_peer(proto, session, timeout)
                reply, esmtp = await self._ehlo(proto, session, helo, timeout)
                session.handshake = False
                keywords = ehlo_keywords(reply) if esmtp else {}
            # a refused STARTTLS: go on in clear text, as qmail-remote does
        return Idle(proto, keywords, esmtp, session.tls, session.protocol, None)

    async def _transaction(self, proto, session: _Session, opened: Idle, message: _Message,
                           qqeh: str, timeout: int, settings: Settings | None = None
                           ) -> DeliveryResult:
        """MAIL, RCPT, DATA and the message on an opened connection (AUTH
        first, the first time); the connection stays open."""
        ip, keywords, esmtp = session.ip, opened.keywords, opened.esmtp
        if message.high is None and esmtp and "8BITMIME" in keywords:
            await self._eight_bit(proto, message, qqeh)
        use_size = "SIZE" in keywords
        params = self._mail_params(proto, session, message, keywords, esmtp)

        mail = f"MAIL FROM:<{quote2(session.sender)}>" + (
            f" SIZE={message.size}" if use_size else "")
        if not opened.authed:
            opened.authed = True
            if settings is not None and settings.auth is not None and esmtp:
                opened.auth_user = await self._authenticate(proto, session, settings,
                                                            keywords, timeout)
        if opened.auth_user is not None:
            mail += f" AUTH=<{xtext(opened.auth_user)}>"
        mail += params
        rcpt = quote2(session.recipient)
        who = f"From: <{outsafe(quote2(session.sender))}> RCPT: <{outsafe(rcpt)}> "
        pipelining = esmtp and "PIPELINING" in keywords
        if pipelining:
            # RFC 2920: the whole envelope and DATA in one write, the
            # replies read back in order
            proto.send(f"{mail}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
                       .encode("utf-8", "surrogateescape"))
        else:
            proto.command(mail)
        reply = await self._first_reply(proto, session, timeout)
        if reply.code >= 400:
            if pipelining:
                await self._drain_replies(proto, session, timeout, 2)
            status = FAILURE if reply.code >= 500 else DEFERRAL
            raise self._quit(proto, session, status, f"Connected to {ip} but sender was rejected",
                             reply)

        if not pipelining:
            proto.command(f"RCPT TO:<{rcpt}>")
        reply = await self._reply(proto, session, timeout)
        if reply.code >= 400:
            if pipelining:
                await self._drain_replies(proto, session, timeout, 1)
            status = FAILURE if reply.code >= 500 else DEFERRAL
            text = f"{who}{ip} does not like recipient." + session.said(reply)
            proto.command("QUIT")
            raise DeliveryError(status, text + f"\nGiving up on {ip}.")
        session.rcpt_prefix = who

        if not pipelining:
            proto.command("DATA")
        reply = await self._reply(proto, session, timeout)
        if reply.code >= 400:
            status = FAILURE if reply.code >= 500 else DEFERRAL
            raise self._quit(proto, session, status, f"{ip} failed on DATA command", reply)
        await self._blast(proto, session, message, qqeh, timeout)
        reply = await self._reply(proto, session, timeout)
        session.critical = False
        if reply.code >= 400:
            status = FAILURE if reply.code >= 500 else DEFERRAL
            raise self._quit(proto, session, status, f"{ip} failed after I sent the message",
                             reply)
        return DeliveryResult(
            SUCCESS, f"{who}{ip} accepted message - Protocol {session.protocol}." + session.said(reply))

    async def _first_reply(self, proto, session: _Session, timeout: int) -> Reply:
        """The reply to MAIL FROM.  On a cached connection, one the peer
        closed meanwhile or answers 421 (its idle timeout) is stale: the
        delivery takes a fresh connection instead."""
        if not session.reused:
            return await self._reply(proto, session, timeout)
        try:
            reply = await self._reply(proto, session, timeout)
        except DeliveryError:
            raise _Stale() from None
        if reply.code == 421:
            proto.abort()
            raise _Stale()
        session.reused = False   # answered: from here on errors are the delivery's
        return reply

    async def _eight_bit(self, proto, message: _Message, qqeh: str) -> None:
        """Whether a large message has 8-bit bytes, read once a peer offers
        8BITMIME (and remembered for the next address)."""
        try:
            message.high, _utf8 = await self._thread(
                msgscan.scan, message.path, qqeh.encode("utf-8", "surrogateescape"))
        except OSError:
            proto.abort()
            raise temporary("Unable to read message. (#4.3.0)") from None

    def _mail_params(self, proto, session: _Session, message: _Message,
                     keywords: dict[str, str], esmtp: bool) -> str:
        """``BODY=8BITMIME`` when the message has 8-bit bytes and the peer
        offers 8BITMIME (without it the bytes go as they are, as qmail-remote
        sends them); ``SMTPUTF8`` when the envelope or a ``Received: … with
        UTF8…`` line needs it, a permanent failure when the peer lacks it."""
        offered_8bit = esmtp and "8BITMIME" in keywords
        params = " BODY=8BITMIME" if message.high and offered_8bit else ""
        if message.utf8 or not (session.sender.isascii() and session.recipient.isascii()):
            if not (esmtp and "SMTPUTF8" in keywords):
                raise self._quit(proto, session, FAILURE, f"Connected to {session.ip} but "
                                 "server does not support unicode in email addresses", None)
            params += " SMTPUTF8"
        return params

    async def _drain_replies(self, proto, session: _Session, timeout: int, count: int) -> None:
        """Read the replies still owed to pipelined commands (RFC 2920);
        a 354 to DATA after a refusal gets an empty message's dot.  The
        refusal stays the reply the ON*_REMOTE scripts see (SMTPCODE)."""
        attempt = session.attempt
        kept = attempt.code, attempt.text
        try:
            for _ in range(count - 1):
                await self._reply(proto, session, timeout)
            reply = await self._reply(proto, session, timeout)
            if reply.code == 354:   # a server that took DATA without a recipient
                proto.send(b".\r\n")
                await self._reply(proto, session, timeout)
        except DeliveryError:
            pass
        finally:
            attempt.code, attempt.text = kept

    async def _ehlo(self, proto, session: _Session, helo: str, timeout: int):
        """EHLO, or HELO after a 5xx; (reply, esmtp).  A refused name quits."""
        proto.command("EHLO " + helo)
        reply = await self._reply(proto, session, timeout)
        esmtp = True
        if reply.code >= 500:
            esmtp = False
            proto.command("HELO " + helo)
            reply = await self._reply(proto, session, timeout)
        if reply.code != 250:
            status = FAILURE if reply.code >= 500 else DEFERRAL
            raise self._quit(proto, session, status,
                             f"Connected to {session.ip} but my name -->{helo}<-- "
                             "was rejected :(", reply)
        return reply, esmtp

    async def _verify_peer(self, proto, session: _Session, timeout: int) -> None:
        """Wait for the TLS handshake, then judge the certificate against
        the destination's policy (tlsdestinations / tlshosts)."""
        d = proto.when_handshake()
        d.addTimeout(timeout, self.clock)
        try:
            await d
        except Exception as exc:
            proto.abort()
            reason = tls_failure(exc)
            if reason:
                raise temporary(f"TLS connect failed: {reason}; connected to {session.ip}.") \
                    from None
            raise session.dropped() from None
        problem = session.creator.check()
        if problem is not None:
            proto.command("QUIT")
            raise temporary(f"{problem}; connected to {session.ip}.")

    async def _verify_implicit(self, proto, session: _Session, timeout: int) -> None:
        """SMTPS to a listed destination: verify before the greeting."""
        await self._verify_peer(proto, session, timeout)

    def _tls_options(self):
        """Opportunistic STARTTLS: like qmail-remote without
        ``tlsdestinations``, the peer's certificate is not verified."""
        from twisted.internet import ssl
        return ssl.CertificateOptions()

    async def _authenticate(self, proto, session: _Session, settings: Settings,
                            keywords: dict[str, str], timeout: int) -> str | None:
        """SMTP AUTH with the route's credentials (qmail-remote's
        ``smtp_auth``, mechanisms from :mod:`.saslclient`); the user name,
        or None when no offered mechanism fits (then the mail goes on
        unauthenticated)."""
        user, password = settings.route.credentials
        disabled = {mech for mech, var in saslclient.DISABLE.items() if var in self.env}
        if "SECURE_AUTH" in self.env and not session.tls:
            disabled |= {"LOGIN", "PLAIN"}
        mech = saslclient.choose(keywords.get("AUTH", ""), settings.auth, disabled,
                                 tls=session.tls)
        binding = saslclient.transport_binding(proto.transport) if session.tls else None
        if mech is not None and mech.endswith("-PLUS") and binding is None:
            mech = None if settings.auth else saslclient.choose(
                keywords.get("AUTH", ""), "", disabled, tls=False)
        if mech is None:
            self.log.info("no supported AUTH method found, continuing without authentication")
            return None
        realm = None
        if mech == "DIGEST-MD5":
            realm = await self._thread(self.control.value, "realm")
        client = saslclient.make_client(mech, user, password, host=session.ip, realm=realm,
                                        binding=binding)

        def rejected(what: str, reply: Reply | None) -> DeliveryError:
            return self._quit(proto, session, DEFERRAL, f"Connected to {session.ip} but "
                              f"authentication was rejected ({what})", reply)

        initial = client.initial()
        proto.command(f"AUTH {mech}" + (f" {b64(initial)}" if initial is not None else ""))
        reply = await self._reply(proto, session, timeout)
        label = f"AUTH {mech}"
        steps = 0
        while reply.code == 334 and steps < MAX_AUTH_STEPS:
            steps += 1
            try:
                challenge = base64.b64decode(reply.text[4:].strip(), validate=False)
                answer = await client.respond(challenge, self._thread)
            except (ValueError, saslclient.SaslClientError) as exc:
                proto.command("*")   # RFC 4954: cancel the exchange
                raise rejected(str(exc), None) from None
            label = client.label
            proto.command(b64(answer))
            reply = await self._reply(proto, session, timeout)
        if reply.code != 235 or not client.done():
            raise rejected(label, reply)
        return user

    def _quit(self, proto, session: _Session, status: str, text: str,
              reply: Reply | None) -> DeliveryError:
        proto.command("QUIT")
        return session.quit(status, text, reply)

    async def _blast(self, proto: SMTPClientProtocol, session: _Session, message: _Message,
                     qqeh: str, timeout: int) -> None:
        """The message: the queue extra headers, then the mess file, then ``.``."""
        if qqeh:
            proto.send(qqeh.encode("utf-8", "surrogateescape").replace(b"\n", b"\r\n"))
        encoder = DataEncoder()
        if message.content is not None:
            proto.send(encoder.feed(message.content))
        else:
            await self._stream(proto, session, message.path, timeout, encoder.feed)
        if not encoder.complete:
            proto.abort()  # never send the dot: the peer must drop it
            raise permanent("SMTP cannot transfer messages with partial final lines. (#5.6.2)")
        session.critical = True
        proto.send(b".\r\n")


    async def _stream(self, proto, session: _Session, mess, timeout: int, encode) -> None:
        """Send the mess file through *encode*, chunk by chunk, waiting
        for the transport to drain (memory stays flat)."""
        try:
            source = await self._thread(open, mess, "rb")
        except OSError:
            proto.abort()
            raise temporary("Unable to read message. (#4.3.0)") from None
        try:
            while True:
                try:
                    chunk = await self._thread(source.read, CHUNK)
                except OSError:
                    proto.abort()
                    raise temporary("Unable to read message. (#4.3.0)") from None
                if not chunk:
                    break
                proto.send(encode(chunk))
                await self._drain(proto, session, timeout)
        finally:
            source.close()

    async def _qmtp(self, proto, session: _Session, message: _Message, qqeh: str,
                    timeout: int) -> DeliveryResult:
        """One QMTP transaction (qmail-remote's ``qmtp()``): the message
        netstring (queue extra headers first), sender, recipient; then the
        recipient's K/Z/D answer."""
        extra = qqeh.encode("utf-8", "surrogateescape")
        proto.send(message_header(len(extra) + message.size) + extra)
        if message.content is not None:
            proto.send(message.content)
        else:
            await self._stream(proto, session, message.path, timeout, lambda chunk: chunk)
        proto.send(envelope(session.sender, [session.recipient]))
        session.critical = True
        reply = await self._reply(proto, session, timeout)
        session.critical = False
        if isinstance(reply, QMTPProtocolError):
            proto.abort()
            raise temporary("recipient did not talk proper QMTP (#4.3.0)")
        said = "Remote host said: " + reply.text
        ip = session.ip
        if reply.status == "K":
            return DeliveryResult(SUCCESS, f"{said}\n{ip} accepted message - Protocol QMTP")
        status = FAILURE if reply.status == "D" else DEFERRAL
        raise DeliveryError(status, f"{said}\nGiving up on {ip} - Protocol QMTP")


__all__ = ["RemoteDelivery", "outsafe"]
