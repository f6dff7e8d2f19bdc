"""An immutable environment: the per-session copy of a service's variables.

tcprules change it at connect, envrules at MAIL/RCPT/AUTH; every change
returns a new object so one session never leaks settings into another and
``os.environ`` is never touched for per-session decisions.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping


class Environment(Mapping[str, str]):
    """A read-only mapping of variable names to values."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None):
        if isinstance(data, Environment):
            data = data._data
        self._data = dict(data) if data else {}

    @classmethod
    def _adopt(cls, data: dict[str, str]) -> "Environment":
        """An Environment over *data*, a dict nobody else holds (no copy)."""
        env = cls.__new__(cls)
        env._data = data
        return env

    # Mapping's mixin methods go through __getitem__ one key at a time; a
    # session's environment is copied and read a few hundred times per
    # message, so each read goes straight to the dict.
    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default=None):
        return self._data.get(key, default)

    def keys(self):
        return self._data.keys()

    def items(self):
        return self._data.items()

    def values(self):
        return self._data.values()

    def __repr__(self) -> str:
        return f"Environment({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def set(self, **values: str) -> "Environment":
        """A copy with *values* set."""
        return self.apply(values.items())

    def unset(self, *names: str) -> "Environment":
        """A copy without *names*."""
        return self.apply((name, None) for name in names)

    def apply(self, assignments: Iterable[tuple[str, str | None]]) -> "Environment":
        """A copy with each ``(name, value)`` applied in order; ``None`` unsets."""
        data = dict(self._data)
        for name, value in assignments:
            if value is None:
                data.pop(name, None)
            else:
                data[name] = value
        return Environment._adopt(data)

    def flag(self, name: str) -> bool:
        """qmail's convention: a switch is on when the variable is set at all."""
        return name in self._data

    def int(self, name: str, default: int) -> int:
        """The variable as an integer, *default* when unset or not a number."""
        try:
            return int(self._data[name].strip())
        except (KeyError, ValueError):
            return default
