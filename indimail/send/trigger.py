"""Watch ``lock/trigger``, the FIFO queue writers poke after each message.

As qmail-send's ``trigger.c``: the FIFO is opened ``O_RDONLY|O_NONBLOCK``
and watched by the reactor; when it becomes readable the bytes are drained.
Unlike qmail-send we also keep a write end open ourselves: the reader then
never sees end of file and never has to close and reopen, and in that gap
a writer's non-blocking open failed with ENXIO and its wake-up was lost
(delivery then waited for the periodic scan).  Should an end of file come
anyway, the FIFO is closed and opened again.
"""

from __future__ import annotations

import os
from typing import Callable

from twisted.internet.abstract import FileDescriptor

from indimail.fastlog import Logger


class _FifoReader(FileDescriptor):
    """One open of the FIFO, registered with the reactor as a reader."""

    def __init__(self, fd: int, reactor, pulled: Callable[[bool], None]):
        super().__init__(reactor)
        self._fd = fd
        self._pulled = pulled

    def fileno(self) -> int:
        return self._fd

    def doRead(self):
        eof = False
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                break
            if not data:
                eof = True
                break
        self._pulled(eof)

    def close(self) -> None:
        self.stopReading()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def connectionLost(self, reason=None):
        """The reactor saw a hang-up with nothing left to read (the last
        writer closed after its byte was drained): reopen, as at end of file."""
        if self._fd >= 0:
            self._pulled(True)


class TriggerWatcher:
    """Calls *on_trigger* each time the FIFO at *path* is written to."""

    log = Logger()

    def __init__(self, path, reactor, on_trigger: Callable[[], None]):
        self.path = os.fspath(path)
        self.reactor = reactor
        self.on_trigger = on_trigger
        self._reader: _FifoReader | None = None
        self._keepalive: int | None = None

    @property
    def watching(self) -> bool:
        return self._reader is not None

    def start(self) -> None:
        """Open the FIFO; a missing FIFO is logged (the periodic scan still runs)."""
        if self._reader is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            self.log.warn("warning: unable to open {path}: {error}", path=self.path,
                          error=exc.strerror)
            return
        self._reader = _FifoReader(fd, self.reactor, self._pulled)
        self._reader.startReading()
        if self._keepalive is None:
            try:
                self._keepalive = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                self.log.warn("warning: unable to hold {path} open: {error}",
                              path=self.path, error=exc.strerror)

    def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def close(self) -> None:
        """Stop watching and let go of the write end too."""
        self.stop()
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            os.close(keepalive)

    def _pulled(self, eof: bool) -> None:
        if eof:
            self.stop()
            self.start()
        self.on_trigger()
