"""Keep the cyclic garbage collector off the heap a service starts with.

A service process holds tens of thousands of long-lived objects (Twisted,
our modules, the configuration) that are never garbage.  Python's oldest
generation collection walks all of them, and under load it runs every
second or so: 25-35 ms in which the reactor answers nobody, the longest
pause an SMTP client saw (RCPT round trips of 1-3 ms had a p99 of 24 ms).
:func:`gc.freeze` moves every object alive at that moment out of the
collector's sight; reference counting still frees them as usual, only
reference cycles made before the freeze are never reclaimed.  The heap is
frozen once the service runs, and again after it has settled (the first
sessions import and cache what they use lazily).
"""

from __future__ import annotations

import gc

from twisted.application import service

SETTLE_SECONDS = 60.0


class FreezeStartupHeap(service.Service):
    """Freeze the heap when the reactor runs and *settle* seconds later."""

    name = "gc-freeze"

    def __init__(self, reactor=None, settle: float = SETTLE_SECONDS):
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.reactor = reactor
        self.settle = settle
        self._later = None

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(gc.freeze)
        self._later = self.reactor.callLater(self.settle, gc.freeze)

    def stopService(self):
        if self._later is not None and self._later.active():
            self._later.cancel()
        self._later = None
        return super().stopService()


def add_process_services(top: service.MultiService, reactor=None) -> None:
    """What every twistd service process runs besides its own work: the
    log file written once per reactor turn and the frozen startup heap."""
    from indimail.logbuffer import LogBuffering
    LogBuffering(reactor).setServiceParent(top)
    FreezeStartupHeap(reactor).setServiceParent(top)
