"""The NUL-separated envelope records of the queue (reference §1).

``intd``/``todo``: ``u<uid>\\0p<pid>\\0F<sender>\\0T<rcpt>\\0...[e..\\0][h..\\0]``.
``info``: ``F<sender>\\0`` plus the ``e``/``h`` records.
``local``/``remote``: ``T<addr>\\0`` records; ``D`` marks a finished one.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ADDRESS = 1003


class EnvelopeError(ValueError):
    """A queue file's records are malformed."""


@dataclass
class Envelope:
    """The envelope of one queued message."""

    sender: str
    recipients: list[str]
    uid: int = 0
    pid: int = 0
    extra_headers: str | None = None   # the ``e`` record (QQEH)
    env_headers: str | None = None     # the ``h`` record (envheaders)

    def todo_bytes(self) -> bytes:
        """The bytes qmail-queue writes to ``intd/`` (no final extra NUL)."""
        parts = [b"u%d" % self.uid, b"p%d" % self.pid, b"F" + _enc(self.sender)]
        parts += [b"T" + _enc(r) for r in self.recipients]
        parts += self._extra_records()
        return b"".join(p + b"\0" for p in parts)

    def info_bytes(self) -> bytes:
        """The bytes todo-proc writes to ``info/``."""
        parts = [b"F" + _enc(self.sender)] + self._extra_records()
        return b"".join(p + b"\0" for p in parts)

    def _extra_records(self) -> list[bytes]:
        records = []
        if self.extra_headers is not None:
            records.append(b"e" + _enc(self.extra_headers))
        if self.env_headers is not None:
            records.append(b"h" + _enc(self.env_headers))
        return records

    @classmethod
    def from_todo(cls, data: bytes) -> "Envelope":
        """Parse an ``intd``/``todo`` file; unknown record types are an error."""
        env = cls(sender="", recipients=[])
        seen_sender = False
        for record in _records(data):
            kind, value = record[:1], _dec(record[1:])
            if kind == b"u":
                env.uid = _int(value)
            elif kind == b"p":
                env.pid = _int(value)
            elif kind == b"F":
                env.sender, seen_sender = value, True
            elif kind == b"T":
                env.recipients.append(value)
            elif kind == b"e":
                env.extra_headers = value
            elif kind == b"h":
                env.env_headers = value
            else:
                raise EnvelopeError(f"unknown envelope record {record[:1]!r}")
        if not seen_sender:
            raise EnvelopeError("envelope has no sender record")
        return env


@dataclass
class Info:
    """The ``info/`` file: the sender and the extra header records."""

    sender: str
    extra_headers: str | None = None
    env_headers: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> "Info":
        info = cls(sender="")
        for record in _records(data):
            kind, value = record[:1], _dec(record[1:])
            if kind == b"F":
                info.sender = value
            elif kind == b"e":
                info.extra_headers = value
            elif kind == b"h":
                info.env_headers = value
            else:
                raise EnvelopeError(f"unknown info record {record[:1]!r}")
        return info


@dataclass
class RecipientRecord:
    """One ``T``/``D`` record of a local/remote file and where it starts."""

    offset: int
    address: str
    done: bool


def recipient_bytes(addresses: list[str]) -> bytes:
    """A ``local/`` or ``remote/`` file's content for *addresses*."""
    return b"".join(b"T" + _enc(a) + b"\0" for a in addresses)


def parse_recipients(data: bytes) -> list[RecipientRecord]:
    """The records of a ``local/``/``remote/`` file with their byte offsets,
    so the first byte can be overwritten with ``D`` in place."""
    out: list[RecipientRecord] = []
    offset = 0
    for record in data.split(b"\0"):
        if record:
            kind = record[:1]
            if kind not in (b"T", b"D"):
                raise EnvelopeError(f"unknown recipient record {kind!r}")
            out.append(RecipientRecord(offset, _dec(record[1:]), kind == b"D"))
        offset += len(record) + 1
    return out


def _records(data: bytes) -> list[bytes]:
    if data and not data.endswith(b"\0"):
        raise EnvelopeError("envelope not terminated by NUL")
    return [r for r in data.split(b"\0")[:-1] if r] if data else []


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _dec(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise EnvelopeError(f"not a number: {text!r}") from None
