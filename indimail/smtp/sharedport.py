"""The listening port SMTP workers share: the least busy worker accepts.

Every worker waits on the same listening socket, and the kernel wakes all of
them for a new connection.  Twisted's ``tcp.Port`` then accepts as many
queued connections as it can in one go (100 at first, more when that many
were waiting), so when sessions arrive in a burst the first worker to wake
takes them all and the others idle for as long as those sessions last:
measured, of 20 sessions opened together one worker ran at 92 % of a core
and the other at 22 %.

A :class:`SharedPort` accepts one connection per turn of its reactor, and
only when no other accepting worker has fewer open sessions (the counts of
the shared limits table,
:meth:`~indimail.smtp.limits.SharedTable.has_less_busy_peer`; a worker that
died or is starting is not accepting).  A worker that holds back stops
reading the socket for :data:`WAIT` seconds; when it looks again and a
connection is still waiting, the others were too busy to take it, and it
takes one itself.
"""

from __future__ import annotations

import select
import socket
from typing import Callable

from twisted.internet import tcp

WAIT = 0.005          # seconds a busier worker leaves new connections to the others


class SharedPort(tcp.Port):
    """A ``tcp.Port`` for a socket other processes accept on too.

    *has_less_busy_peer* (a callable, or None for one accept per turn and no
    balancing) says whether another process should take the next connection."""

    has_less_busy_peer: Callable[[], bool] | None = None
    clock = None           # the wait's clock (the port's reactor when None)
    _take_one = False      # the others left a connection waiting: take it
    _waiting = None

    @property
    def numberAccepts(self) -> int:
        return 1

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        """tcp.Port adapts its batch after every accept round; ours stays 1."""

    def doRead(self):
        if not self._take_one and self.has_less_busy_peer is not None \
                and self.has_less_busy_peer():
            self.stopReading()
            clock = self.clock if self.clock is not None else self.reactor
            self._waiting = clock.callLater(WAIT, self._look_again)
            return None
        self._take_one = False
        return super().doRead()

    def _look_again(self) -> None:
        self._waiting = None
        if not self.connected or self.disconnecting:
            return
        self.startReading()
        self._take_one = _readable(self.fileno())   # nobody took it meanwhile

    def _stop_waiting(self) -> None:
        if self._waiting is not None and self._waiting.active():
            self._waiting.cancel()
        self._waiting = None

    def loseConnection(self, connDone=None):
        self._stop_waiting()
        return super().loseConnection(connDone)

    stopListening = loseConnection

    def connectionLost(self, reason):
        self._stop_waiting()
        return super().connectionLost(reason)


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def adopt_shared_port(reactor, fd: int, family: int, factory,
                      has_less_busy_peer: Callable[[], bool] | None = None):
    """Listen on the inherited socket *fd* with a :class:`SharedPort` (a
    non-TCP socket gets the reactor's usual port)."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return reactor.adoptStreamPort(fd, family, factory)
    port = SharedPort._fromListeningDescriptor(reactor, fd, family, factory)
    port.has_less_busy_peer = has_less_busy_peer
    port.startListening()
    return port
