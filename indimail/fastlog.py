"""Twisted's ``Logger`` without its per-event cost of checking the level.

``twisted.logger.Logger.emit`` checks the level against
``LogLevel.iterconstants()``, which sorts the level constants anew on every
event.  The delivery engine writes qmail-send's lines for every message and
relays the SMTP workers' lines, so under load that check alone was 7-9 % of
the delivery process's Python time.  This ``Logger`` checks against a set
made once and builds the same event; an unknown level still goes to
Twisted's ``emit``, which reports it.  A process whose log drops debug
events says so with :func:`drop_debug`, and ``debug`` then makes none.  Use
it wherever a module would use Twisted's (``from indimail.fastlog import
Logger``).
"""

from __future__ import annotations

from time import time

from twisted.logger import Logger as TwistedLogger
from twisted.logger import LogLevel

_LEVELS = frozenset(LogLevel.iterconstants())
_debug_observed = True


def drop_debug(dropped: bool = True) -> None:
    """Say that no observer of this process keeps debug events (the SMTP
    workers' log keeps info and above): ``log.debug`` then makes no event.
    The plugin chain logs every plugin's verdict at debug level, eight or so
    per RCPT, each an event built only for the filter to throw away."""
    global _debug_observed
    _debug_observed = not dropped


def debug_observed() -> bool:
    """Whether debug events are kept: a caller whose debug line costs work
    to prepare (a property per argument) skips it when they are not."""
    return _debug_observed


class Logger(TwistedLogger):
    """``twisted.logger.Logger`` with a cheaper :meth:`emit`."""

    def debug(self, format: str | None = None, **kwargs: object) -> None:
        if _debug_observed:
            self.emit(LogLevel.debug, format, **kwargs)

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level not in _LEVELS:
            super().emit(level, format, **kwargs)
            return
        event = kwargs
        event.update(log_logger=self, log_level=level, log_namespace=self.namespace,
                     log_source=self.source, log_format=format, log_time=time())
        if "log_trace" in event:
            event["log_trace"].append((self, self.observer))
        self.observer(event)
