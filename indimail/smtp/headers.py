"""The header section of a message as it streams in, for queue-time plugins.

Only the first :data:`LIMIT` bytes are kept: plugins see the headers, the
body goes straight to disk (memory stays flat for any message size).
"""

from __future__ import annotations

LIMIT = 64 * 1024


class HeaderBlock:
    """Collects decoded message bytes up to the blank line ending the headers."""

    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self._data = bytearray()
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        if self.complete:
            return
        self._data += chunk[:self.limit - len(self._data) + 4]
        end = self._data.find(b"\n\n") if b"\r" not in self._data else self._data.find(b"\r\n\r\n")
        if end >= 0:
            del self._data[end + 1:]
            self.complete = True
        elif len(self._data) >= self.limit:
            del self._data[self.limit:]
            self.complete = True

    def fields(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs in order; folded lines unfolded."""
        out: list[tuple[str, str]] = []
        for raw in bytes(self._data).replace(b"\r\n", b"\n").split(b"\n"):
            line = raw.decode("utf-8", "surrogateescape")
            if not line:
                break
            if line[0] in " \t" and out:
                name, value = out[-1]
                out[-1] = (name, value + " " + line.strip())
                continue
            name, sep, value = line.partition(":")
            if sep and name and " " not in name:
                out.append((name, value.strip()))
        return out
