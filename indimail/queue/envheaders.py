"""Collect the header lines named in control ``envheaders`` for the ``h``
envelope record, while the message streams past (qmail-queue's
``envheaders``): only the header section is looked at, continuation lines
travel with their field, nothing is held but the matching lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ..config.control import strip_lines
from ..diskio import read_if_exists


def load_envheaders(env: Mapping[str, str], control_dir: Path | None) -> list[str]:
    """Names from the control file ``$ENVHEADERS`` (default ``envheaders``);
    an entry ``Name:len`` keeps upstream's length suffix out of the name.
    Blocking (reads a file)."""
    if control_dir is None:
        return []
    name = env.get("ENVHEADERS") or "envheaders"
    data = read_if_exists(os.path.join(control_dir, name))   # an absolute name stands alone
    if data is None:
        return []
    lines = strip_lines(data)
    return [line.split(":", 1)[0].strip().lower() for line in lines if line.strip()]


class HeaderCollector:
    """Fed the message bytes in any chunking; ``collected`` is the text of
    the matching header fields once the header has been seen."""

    def __init__(self, names: list[str]):
        self.names = [n.lower() for n in names]
        self.partial = b""
        self.in_header = True
        self.including = False
        self.lines: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if not self.in_header or not data:
            return
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > 65536:       # an absurd header line: stop looking
            self.in_header, self.partial = False, b""
        for line in lines:
            if not self._line(line + b"\n"):
                self.in_header, self.partial = False, b""
                return

    def _line(self, line: bytes) -> bool:
        stripped = line.rstrip(b"\r\n")
        if not stripped:
            return False
        if stripped[:1] in (b" ", b"\t"):
            if self.including:
                self.lines.append(line)
            return True
        colon = stripped.find(b":")
        if colon <= 0:
            return False
        name = stripped[:colon].strip().decode("ascii", "replace").lower()
        self.including = name in self.names
        if self.including:
            self.lines.append(line)
        return True

    @property
    def collected(self) -> str | None:
        if not self.lines:
            return None
        return b"".join(self.lines).decode("utf-8", "surrogateescape")
