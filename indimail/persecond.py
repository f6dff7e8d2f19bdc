"""A timestamp's text made once per second.

Log lines and the Received/Date headers show time to the second, and making
that text (a time zone lookup and a formatting pass) for every line or
message was a measurable share of a busy process.  :class:`PerSecond`
keeps the last second's text; a fraction so close to the next second that
``datetime`` would round it up is formatted as given.
"""

from __future__ import annotations

from typing import Callable

ROUNDS_UP = 0.9999995   # datetime.fromtimestamp rounds this to the next second


class PerSecond:
    """*make* (``seconds -> text``) cached for the current second."""

    def __init__(self, make: Callable[[float], str]):
        self.make = make
        self._last: tuple[int, str] | None = None   # (second, its text): one object, for threads

    def __call__(self, when: float) -> str:
        second = int(when // 1)
        if when - second >= ROUNDS_UP:
            return self.make(when)
        last = self._last
        if last is None or last[0] != second:
            last = self._last = (second, self.make(second))
        return last[1]
