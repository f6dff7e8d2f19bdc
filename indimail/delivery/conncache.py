"""Idle SMTP connections kept for the next delivery to the same place.

qmail-remote opens a connection per message, so a backlog to one relay or
MX costs a TCP handshake, a greeting, EHLO (and STARTTLS, AUTH) and QUIT per
message on both sides.  Like Postfix's connection cache, the send service
keeps a connection whose transaction succeeded idle for a few seconds
(``REMOTE_CACHE_TIME``, default 2, ``0`` turns caching off), and the next
delivery with the same :class:`Key` sends its ``MAIL FROM`` on it.  A
connection is not parked again once its first transaction is
``REMOTE_REUSE_TIME`` seconds past (default 300).  An idle connection that
expires gets ``QUIT``; one the peer closes leaves the cache, and one the peer
wrote to while idle is closed when it is next taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from twisted.application import service

IDLE_TIME = 2.0     # Postfix: smtp_connection_cache_time_limit
REUSE_TIME = 300.0  # Postfix: smtp_connection_reuse_time_limit


@dataclass(frozen=True)
class Key:
    """What a connection must share with a delivery to carry it: where it
    goes, from where, under which name, with which TLS demands and as whom."""

    address: str
    port: int
    bind_ip: str | None
    helo: str
    implicit_tls: bool
    starttls: bool
    policy: object          # TLSPolicy, False or None (tlsdestinations)
    partner: str            # the name a verified certificate must carry
    auth: str | None        # AUTH_SMTP
    credentials: tuple[str, str] | None = field(repr=False)
    auth_disabled: frozenset = frozenset()   # DISABLE_AUTH_* mechanisms
    secure_auth: bool = False                # SECURE_AUTH


@dataclass
class Idle:
    """A connection between transactions and what its opening learnt."""

    proto: object           # SMTPClientProtocol
    keywords: dict          # the EHLO keywords in force
    esmtp: bool
    tls: bool
    protocol: str           # "SMTP", "SMTPS": the report's "Protocol" word
    auth_user: str | None   # sent as MAIL FROM's AUTH= parameter
    born: float | None = None   # when first parked
    timer: object = None
    authed: bool = False    # AUTH was tried on this connection (done or not offered)
    watched: bool = False   # the cache hears of the connection's end


class ConnectionCache(service.Service):
    """The idle connections of one send service, by :class:`Key`.

    A service so that stopping the send service says ``QUIT`` on each; after
    that nothing more is kept."""

    def __init__(self, clock, idle_time: float = IDLE_TIME, reuse_time: float = REUSE_TIME):
        self.clock = clock
        self.idle_time = idle_time
        self.reuse_time = reuse_time
        self._idle: dict[Key, list[Idle]] = {}
        self._closed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], clock) -> "ConnectionCache | None":
        """The cache ``REMOTE_CACHE_TIME``/``REMOTE_REUSE_TIME`` ask for;
        None when caching is off.  A value that is not a number is an
        error naming the variable."""
        idle = _seconds(env, "REMOTE_CACHE_TIME", IDLE_TIME)
        if idle <= 0:
            return None
        return cls(clock, idle, _seconds(env, "REMOTE_REUSE_TIME", REUSE_TIME))

    def take(self, key: Key) -> Idle | None:
        """The most recently parked connection for *key* that is still open
        and silent, out of the cache.  One the peer wrote to while it was
        idle would answer the next command with that text: it is closed."""
        parked = self._idle.get(key)
        while parked:
            idle = parked.pop()
            self._cancel(idle)
            if not parked:
                del self._idle[key]
            if idle.proto.between_replies():
                return idle
            idle.proto.abort()
        return None

    def put(self, key: Key, idle: Idle) -> bool:
        """Park *idle*; False (the caller says QUIT) when the cache is
        stopped, the connection too old or not at a clean reply boundary."""
        now = self.clock.seconds()
        if idle.born is None:
            idle.born = now
        if (self._closed or now - idle.born >= self.reuse_time
                or not idle.proto.between_replies()):
            return False
        self._idle.setdefault(key, []).append(idle)
        idle.timer = self.clock.callLater(self.idle_time, self._expire, key, idle)
        if not idle.watched:   # once per connection, however often it is parked
            idle.watched = True
            idle.proto.when_lost().addCallback(lambda _: self._forget(key, idle))
        return True

    def __len__(self) -> int:
        return sum(len(parked) for parked in self._idle.values())

    def _expire(self, key: Key, idle: Idle) -> None:
        idle.timer = None
        self._forget(key, idle)
        _quit(idle)

    def _forget(self, key: Key, idle: Idle) -> None:
        parked = self._idle.get(key)
        if parked and idle in parked:
            parked.remove(idle)
            self._cancel(idle)
            if not parked:
                del self._idle[key]

    @staticmethod
    def _cancel(idle: Idle) -> None:
        if idle.timer is not None and idle.timer.active():
            idle.timer.cancel()
        idle.timer = None

    def stopService(self):
        """QUIT every idle connection; keep none from now on."""
        self._closed = True
        parked, self._idle = self._idle, {}
        for idles in parked.values():
            for idle in idles:
                self._cancel(idle)
                _quit(idle)
        return super().stopService()

    def startService(self):
        self._closed = False
        return super().startService()


def _quit(idle: Idle) -> None:
    idle.proto.command("QUIT")
    idle.proto.close()


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None or not str(value).strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}: not a number of seconds: {value!r}") from None


__all__ = ["ConnectionCache", "Idle", "Key"]
