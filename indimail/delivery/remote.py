"""Remote delivery: qmail-remote's job for one recipient.

The route comes from ``SMTPROUTE``/``control/smtproutes`` or, without one,
from the domain's MX records (A and AAAA).  Addresses are tried in order
until one answers its greeting, from the source address ``OUTGOINGIP``,
``outgoingip`` or ``domainbindings`` name.  Then EHLO (or HELO), STARTTLS
when offered (opportunistic, unverified, unless ``notlshosts`` says no),
SMTP AUTH with the route's credentials when ``AUTH_SMTP`` is set, MAIL FROM,
RCPT TO and DATA, streaming the queued message from disk with CRLF line
ends and dot-stuffing.  Replies map to qmail-remote's results and report
texts: 2xx success, 5xx failure, 4xx and lost connections deferral.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Mapping

from twisted.internet import endpoints

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.config.home import Home
from indimail.delivery import mx
from indimail.delivery.agent import DeliveryAgent
from indimail.delivery.lines import quote2
from indimail.delivery.result import (
    DEFERRAL, FAILURE, SUCCESS, DeliveryError, DeliveryResult, permanent, temporary)
from indimail.delivery.smtpclient import (
    DataEncoder, Reply, SMTPClientProtocol, auth_cram, auth_plain, b64, choose_auth,
    ehlo_keywords, xtext)
from indimail.delivery.smtproutes import PORT_SMTP, Route, routes_for

CHUNK = 65536
BIND_IP = "0.0.0.0"


def outsafe(text: str) -> str:
    """qmail-remote's ``outsafe``: unprintable characters become ``?``."""
    return "".join(ch if 33 <= ord(ch) <= 126 else "?" for ch in text)


# AUTH_SMTP picks a mechanism automatically unless these disable one.
_DISABLE = {"LOGIN": "DISABLE_AUTH_LOGIN", "PLAIN": "DISABLE_AUTH_PLAIN",
            "CRAM-MD5": "DISABLE_CRAM_MD5", "CRAM-SHA1": "DISABLE_CRAM_SHA1",
            "CRAM-SHA256": "DISABLE_CRAM_SHA256"}
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


class _Dropped(Exception):
    """The connection died or timed out while waiting on the peer."""


class _NextMX(Exception):
    """The greeting said 4xx: try the next address."""


class _Session:
    """State of one SMTP conversation, for the report texts."""

    def __init__(self, ip: str, sender: str, recipient: str, tls: bool = False):
        self.ip = ip
        self.protocol = "SMTPS" if tls else "SMTP"
        self.sender = sender
        self.recipient = recipient
        self.rcpt_prefix = ""          # "From: <s> RCPT: <r> " once RCPT was taken
        self.critical = False          # the final dot was sent
        self.in_greeting = False
        self.tls = tls                 # SMTPS or STARTTLS done
        self.handshake = False         # STARTTLS sent, TLS not proven yet

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
            text += "Will try alternate MX. "
        return temporary(self.rcpt_prefix + text + "(#4.4.2)")


class _LazyResolver:
    """Creates the system resolver when a lookup is first made."""

    def __init__(self, owner: "RemoteDelivery"):
        self._owner = owner

    def __getattr__(self, name):
        return getattr(self._owner._system_resolver(), name)


class RemoteDelivery(DeliveryAgent):
    """Delivers one recipient of one queued message over SMTP."""

    channel = "remote"
    program = "qmail-remote"

    def __init__(self, home: Home, control: ControlFiles, *, reactor=None,
                 env: Mapping[str, str] | None = None, resolver=None,
                 threadpool=None, rng: random.Random | None = None, clock=None):
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
            self._resolver = client.Resolver(resolv="/etc/resolv.conf", reactor=self.reactor)
        return self._resolver

    # -- settings (read files: called in a thread) ----------------------------

    def settings(self, domain: str, sender: str) -> Settings:
        routes = routes_for(self.env, self.control)
        route = routes.lookup(domain, sender)
        helo = (self.control.value("helohost") or self.control.value("me")
                or "localhost")
        bind_ip = self.outgoing_ip(domain)
        binding = self.domain_binding(sender)
        if binding is not None:  # qmail-remote: bind and HELO as the sender's domain
            bind_ip, helo = binding
        auth = self.env.get("AUTH_SMTP")
        if route is None or route.credentials is None:
            auth = None
        return Settings(route, helo, self.control.int("timeoutconnect", 60),
                        self.control.int("timeoutremote", 1200),
                        None if (bind_ip or "") in _UNBOUND else bind_ip, auth,
                        not self.no_tls(domain, route.host if route else domain))

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

    async def _run(self, mess, sender: str, recipient: str, qqeh: str) -> DeliveryResult:
        domain = recipient[recipient.rfind("@") + 1:] if "@" in recipient else recipient
        settings = await self._thread(self.settings, domain, sender)
        route, helo = settings.route, settings.helo
        t_connect, t_remote = settings.timeout_connect, settings.timeout_remote
        host = route.host if route else domain
        port = route.port if route else PORT_SMTP
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
        try:
            size = await self._thread(lambda: os.stat(mess).st_size)
        except OSError:
            raise temporary("Unable to read message. (#4.3.0)") from None
        tried: list[str] = []
        last_drop: DeliveryError | None = None
        for target in targets:
            tried.append(target.address)
            tls = bool(route and route.implicit_tls)
            bind = settings.bind_ip
            if bind is not None and same_family(bind, target.address):
                proto = await self._connect(target.address, port, t_connect, tls, bind)
            else:
                proto = await self._connect(target.address, port, t_connect, tls)
            if proto is None:
                continue
            session = _Session(target.address, sender, recipient, tls)
            try:
                return await self._converse(proto, session, helo, mess, qqeh, size, t_remote,
                                            settings)
            except _NextMX:
                continue
            except DeliveryError as exc:
                if session.in_greeting and exc.result.status == DEFERRAL:
                    last_drop = exc  # died in the greeting: try the next address
                    continue
                raise
            finally:
                proto.close()
        if last_drop is not None:
            raise last_drop
        where = (f" to {','.join(tried)} port {port} bind IP [{settings.bind_ip or BIND_IP}]"
                 if tried else "")
        raise temporary(
            f"Sorry, I wasn't able to establish a SMTP connection for {host}{where}. (#4.4.1)")

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
            return await d
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

    async def _converse(self, proto, session: _Session, helo: str, mess, qqeh: str,
                        size: int, timeout: int, settings: Settings | None = None
                        ) -> DeliveryResult:
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
        starttls = settings is None or settings.starttls
        if esmtp and starttls and not session.tls and "STARTTLS" in keywords:
            proto.command("STARTTLS")
            reply = await self._reply(proto, session, timeout)
            if reply.code == 220 and proto.start_tls(self._tls_options()):
                session.tls = session.handshake = True
                reply, esmtp = await self._ehlo(proto, session, helo, timeout)
                session.handshake = False
                keywords = ehlo_keywords(reply) if esmtp else {}
            # a refused STARTTLS: go on in clear text, as qmail-remote does
        use_size = "SIZE" in keywords

        mail = f"MAIL FROM:<{quote2(session.sender)}>" + (f" SIZE={size}" if use_size else "")
        if settings is not None and settings.auth is not None and esmtp:
            user = await self._authenticate(proto, session, settings, keywords, timeout)
            if user is not None:
                mail += f" AUTH=<{xtext(user)}>"
        proto.command(mail)
        reply = await self._reply(proto, session, timeout)
        if reply.code >= 400:
            status = FAILURE if reply.code >= 500 else DEFERRAL
            raise self._quit(proto, session, status, f"Connected to {ip} but sender was rejected",
                             reply)

        rcpt = quote2(session.recipient)
        proto.command(f"RCPT TO:<{rcpt}>")
        reply = await self._reply(proto, session, timeout)
        who = f"From: <{outsafe(quote2(session.sender))}> RCPT: <{outsafe(rcpt)}> "
        if reply.code >= 400:
            status = FAILURE if reply.code >= 500 else DEFERRAL
            text = f"{who}{ip} does not like recipient." + session.said(reply)
            proto.command("QUIT")
            raise DeliveryError(status, text + f"\nGiving up on {ip}.")
        session.rcpt_prefix = who

        proto.command("DATA")
        reply = await self._reply(proto, session, timeout)
        if reply.code >= 400:
            status = FAILURE if reply.code >= 500 else DEFERRAL
            raise self._quit(proto, session, status, f"{ip} failed on DATA command", reply)
        await self._blast(proto, session, mess, qqeh, timeout)
        reply = await self._reply(proto, session, timeout)
        session.critical = False
        if reply.code >= 400:
            status = FAILURE if reply.code >= 500 else DEFERRAL
            raise self._quit(proto, session, status, f"{ip} failed after I sent the message",
                             reply)
        proto.command("QUIT")
        return DeliveryResult(
            SUCCESS, f"{who}{ip} accepted message - Protocol {session.protocol}." + session.said(reply))

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

    def _tls_options(self):
        """Opportunistic STARTTLS: like qmail-remote without
        ``tlsdestinations``, the peer's certificate is not verified."""
        from twisted.internet import ssl
        return ssl.CertificateOptions()

    async def _authenticate(self, proto, session: _Session, settings: Settings,
                            keywords: dict[str, str], timeout: int) -> str | None:
        """SMTP AUTH with the route's credentials (qmail-remote's
        ``smtp_auth``); the user name, or None when no offered mechanism
        fits (then the mail goes on unauthenticated)."""
        user, password = settings.route.credentials
        disabled = {mech for mech, var in _DISABLE.items() if var in self.env}
        if "SECURE_AUTH" in self.env and not session.tls:
            disabled |= {"LOGIN", "PLAIN"}
        mech = choose_auth(keywords.get("AUTH", ""), settings.auth, disabled)
        if mech is None:
            self.log.info("no supported AUTH method found, continuing without authentication")
            return None

        async def step(line: str, want: int, what: str) -> Reply:
            proto.command(line)
            reply = await self._reply(proto, session, timeout)
            if reply.code != want:
                raise self._quit(proto, session, DEFERRAL,
                                 f"Connected to {session.ip} but authentication was "
                                 f"rejected ({what})", reply)
            return reply

        challenge = await step("AUTH " + mech, 334, "AUTH " + mech)
        if mech == "PLAIN":
            await step(auth_plain(user, password), 235, "plain")
        elif mech == "LOGIN":
            await step(b64(user.encode()), 334, "username")
            await step(b64(password.encode()), 235, "password")
        else:
            await step(auth_cram(mech, user, password, challenge.text[4:]), 235,
                       "username+digest")
        return user

    def _quit(self, proto, session: _Session, status: str, text: str,
              reply: Reply | None) -> DeliveryError:
        proto.command("QUIT")
        return session.quit(status, text, reply)

    async def _blast(self, proto: SMTPClientProtocol, session: _Session, mess, qqeh: str,
                     timeout: int) -> None:
        """The message: the queue extra headers, then the mess file, then ``.``."""
        if qqeh:
            proto.send(qqeh.encode("utf-8", "surrogateescape").replace(b"\n", b"\r\n"))
        encoder = DataEncoder()
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
                proto.send(encoder.feed(chunk))
                await self._drain(proto, session, timeout)
        finally:
            source.close()
        if not encoder.complete:
            proto.abort()  # never send the dot: the peer must drop it
            raise permanent("SMTP cannot transfer messages with partial final lines. (#5.6.2)")
        session.critical = True
        proto.send(b".\r\n")


__all__ = ["RemoteDelivery", "outsafe"]
