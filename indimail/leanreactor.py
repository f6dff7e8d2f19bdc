"""Twisted's epoll reactor without a logging context around every event.

``EPollReactor.doPoll`` hands each ready descriptor to ``_doReadOrWrite``
through ``log.callWithLogger``, which copies the legacy log context and
pushes the descriptor's ``logPrefix`` as its ``system`` for the length of
the call.  Only legacy ``log.msg``/``log.err`` events read that context;
IndiMail logs through :mod:`indimail.fastlog`, whose events name their own
namespace.  In an SMTP worker under a RCPT load the wrapping was 7 % of the
process's busy time (every RCPT is a read event, every database answer
another), so this reactor calls ``_doReadOrWrite`` directly.

An exception escaping ``_doReadOrWrite`` (it handles a protocol's own
errors itself) is logged as ``callWithLogger`` would, under the
descriptor's prefix.  What changes: a legacy event written while a read or
write is handled carries the system ``-`` instead of the connection's
prefix (Twisted's "Unhandled Error" line for an exception in a protocol's
``dataReceived`` is one).

Install it before anything imports ``twisted.internet.reactor``
(:func:`install`); the SMTP workers do.
"""

from __future__ import annotations

import errno

from twisted.internet.epollreactor import EPollReactor
from twisted.python import log


class LeanEPollReactor(EPollReactor):
    """:class:`EPollReactor` whose events skip the per-call log context."""

    def doPoll(self, timeout):
        if timeout is None:
            timeout = -1
        try:
            ready = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err(system=_prefix(selectable))

    doIteration = doPoll


def _prefix(selectable) -> str:
    try:
        return selectable.logPrefix()
    except BaseException:
        return "(buggy logPrefix method)"


def install() -> LeanEPollReactor:
    """Install the lean reactor as ``twisted.internet.reactor``."""
    from twisted.internet.main import installReactor
    reactor = LeanEPollReactor()
    installReactor(reactor)
    return reactor
