"""twistd's log line format, made cheaply.

Every log line of a service goes through Twisted's classic formatter, which
parses the event's format string, builds a time zone and a ``datetime`` for
the timestamp and formats the ``[namespace#level]`` part anew each time.
The delivery engine writes qmail-send's six to eight lines per message and
the SMTP workers one more, so under load that was a tenth of the delivery
process's Python time.  :class:`ClassicFormat` makes the same text: format
strings are parsed once, the timestamp is made once per second, and the
system part once per namespace and level.  Any event it is not sure of
(a traceback, a flattened event, a field with a conversion, a format spec,
an attribute, an index or a call, a missing key) goes through Twisted's own
formatter, and :func:`install` only replaces a formatter after checking
that both write the same lines.
"""

from __future__ import annotations

import string
import time

from twisted.logger import (
    FileLogObserver, LogLevel, formatEvent, formatEventAsClassicLogText, formatTime,
    timeFormatRFC3339)

from indimail.persecond import PerSecond

_PARSER = string.Formatter()


def _template(fmt: str) -> tuple[tuple[str, str | None], ...] | None:
    """(literal text, field name or None) pairs of a format string whose
    fields are plain names; None when it has anything else."""
    out = []
    try:
        for literal, field, spec, conversion in _PARSER.parse(fmt):
            if field is not None and (spec or conversion or not field.isidentifier()):
                return None
            out.append((literal, field))
    except ValueError:
        return None
    return tuple(out)


class EventText:
    """Twisted's :func:`~twisted.logger.formatEvent` for the common
    events, with each format string parsed once."""

    def __init__(self, limit: int = 512):
        self._templates: dict[str, tuple | None] = {}
        self._limit = limit

    def __call__(self, event) -> str:
        fmt = event.get("log_format")
        if type(fmt) is not str or "log_flattened" in event:
            return formatEvent(event)
        try:
            template = self._templates[fmt]
        except KeyError:
            template = _template(fmt)
            if len(self._templates) < self._limit:
                self._templates[fmt] = template
        if template is None:
            return formatEvent(event)
        try:
            return "".join([literal if field is None else literal + format(event[field], "")
                            for literal, field in template])
        except Exception:
            return formatEvent(event)   # Twisted says why it cannot


class ClassicFormat:
    """:func:`~twisted.logger.formatEventAsClassicLogText` with
    *time_format* timestamps (twistd's: RFC 3339, to the second)."""

    def __init__(self, time_format: str | None = timeFormatRFC3339):
        self.time_format = time_format
        self.text = EventText()
        self._stamps = PerSecond(lambda when: formatTime(when, self.time_format))
        self._systems: dict[tuple[str, object], str] = {}

    def __call__(self, event) -> str | None:
        if "log_failure" in event:
            return self._twisted(event)
        text = self.text(event)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            key = (event.get("log_namespace", "-"), event.get("log_level"))
            system = self._systems.get(key)
            if system is None:
                level = key[1].name if key[1] is not None else "-"
                system = self._systems[key] = f"{key[0]}#{level}"
        else:
            try:
                system = str(system)
            except Exception:
                system = "UNFORMATTABLE"
        line = f"{self._time(event.get('log_time'))} [{system}] {text}"
        return line.replace("\n", "\n\t") + "\n"

    def _time(self, when) -> str:
        return "-" if when is None else self._stamps(when)

    def _twisted(self, event) -> str | None:
        return formatEventAsClassicLogText(
            event, formatTime=lambda when: formatTime(when, self.time_format))


def _samples(now: float) -> list[dict]:
    return [
        {"log_format": "{line}", "line": "status: local 0/10 remote 1/20", "log_time": now,
         "log_namespace": "indimail.send.engine.QueueEngine", "log_level": LogLevel.info},
        {"log_format": "smtpd worker {n}: {line}", "n": 2, "line": "a\nb {x}",
         "log_time": now + 0.999, "log_system": "sys", "log_level": LogLevel.warn},
        {"log_format": "no fields {{braces}}", "log_time": None},
        {"log_format": "{missing}", "log_time": now, "log_level": LogLevel.error},
        {"log_format": "{a!r} {b:>4} {c.real}", "a": "x", "b": 1, "c": 2, "log_time": now},
        {"log_format": "", "log_time": now},
        {"log_time": now},
    ]


def install(observer: FileLogObserver) -> bool:
    """Give *observer* a :class:`ClassicFormat` when it writes the same
    lines as the formatter it has (twistd's default); False when not."""
    current = observer.formatEvent
    if isinstance(current, ClassicFormat):
        return True
    fast = ClassicFormat()
    now = time.time()
    try:
        if any(fast(event) != current(event) for event in _samples(now)):
            return False
    except Exception:
        return False
    observer.formatEvent = fast
    return True


__all__ = ["ClassicFormat", "EventText", "install"]
