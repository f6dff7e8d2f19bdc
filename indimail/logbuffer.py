"""twistd's log file, written once per reactor turn.

twistd's text log observer writes and flushes every event: one ``write``
system call per log line.  The delivery engine logs six lines per message in
qmail-send's words, and every system call on the reactor thread gives up the
GIL and must win it back from the pool threads doing the disk work.  Under
load that costs more than the deliveries themselves.  :class:`LogBuffering`
puts the log file of twistd's observer behind :class:`TurnBufferedFile`,
which gathers the lines of one reactor turn and writes them with one call.
Lines are never reordered; they are at most one reactor turn late, and
everything is written when the service stops.  The lines themselves are
made by :mod:`indimail.logformat`.
"""

from __future__ import annotations

import threading

from twisted.application import service
from twisted.logger import FileLogObserver, globalLogPublisher

from indimail import logformat


class TurnBufferedFile:
    """A write-only file that passes its text on once per reactor turn;
    without a reactor (before :meth:`attach`) every write goes through."""

    def __init__(self, out, reactor=None):
        self.out = out
        self.reactor = reactor
        self._parts: list = []
        self._lock = threading.Lock()
        self._scheduled = False

    def attach(self, reactor) -> None:
        """Buffer from now on; write what is left when *reactor* stops."""
        self.reactor = reactor
        reactor.addSystemEventTrigger("after", "shutdown", self.drain)

    def write(self, text) -> None:
        with self._lock:
            self._parts.append(text)
            if self._scheduled:
                return
            self._scheduled = True
        if self.reactor is None:
            self.drain()
        elif threading.current_thread() is threading.main_thread():
            self.reactor.callLater(0, self.drain)
        else:
            self.reactor.callFromThread(self.drain)

    def flush(self) -> None:
        """The observer flushes after every event; the turn's end does it instead."""

    def drain(self) -> None:
        with self._lock:
            parts, self._parts = self._parts, []
            self._scheduled = False
        if parts:
            self.out.write(parts[0][:0].join(parts))
            self.out.flush()


def _file_observers() -> list[FileLogObserver]:
    """The text file observers twistd installed (none when the layout of
    Twisted's publisher is not the one this was written for)."""
    observers = getattr(globalLogPublisher, "_observers", [])
    return [o for o in observers
            if isinstance(o, FileLogObserver) and hasattr(o, "_outFile")]


class LogBuffering(service.Service):
    """While running, twistd's log file is written once per reactor turn."""

    name = "log-buffering"

    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.reactor = reactor
        self._wrapped: list[tuple[FileLogObserver, TurnBufferedFile]] = []

    def startService(self) -> None:
        super().startService()
        for observer in _file_observers():
            logformat.install(observer)   # same lines, made more cheaply
            if not isinstance(observer._outFile, TurnBufferedFile):
                buffered = TurnBufferedFile(observer._outFile, self.reactor)
                observer._outFile = buffered
                self._wrapped.append((observer, buffered))

    def stopService(self):
        for observer, buffered in self._wrapped:
            buffered.drain()
            if observer._outFile is buffered:
                observer._outFile = buffered.out
        self._wrapped.clear()
        return super().stopService()
