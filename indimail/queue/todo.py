"""Todo processing (``todo-proc``): turn ``todo/S/id`` into info/local/remote.

Each recipient is classified as qmail-send's ``rewrite()`` does: a domain in
``locals`` stays as is (local); a ``virtualdomains`` match — exact address,
domain, ``.suffix`` parents, then the ``:prepend`` catch-all — becomes
``prepend-address`` (local); an empty prepend is an exception and, like
every other address, goes remote.  The file work is blocking and meant for
a worker thread: the engine calls :func:`process_todo` with
``deferToThread``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from indimail.diskio import write_file
from indimail.config.control import ControlFiles
from indimail.queue.envelope import Envelope, EnvelopeError, recipient_bytes
from indimail.queue.layout import QueueDir
from indimail.queue.schedule import CHANNELS, LOCAL, REMOTE


class TodoError(Exception):
    """A todo file could not be processed now; it stays for the next scan."""


def parse_virtualdomains(lines: Iterable[str]) -> dict[str, str]:
    """``key:prepend`` lines as a case-insensitive map (keys lower-cased)."""
    table: dict[str, str] = {}
    for line in lines:
        key, sep, prepend = line.strip().partition(":")
        if sep:
            table[key.lower()] = prepend
    return table


@dataclass(frozen=True)
class Rewriter:
    """qmail-send's recipient classification, from the control files."""

    locals: frozenset[str]
    virtualdomains: Mapping[str, str] = field(default_factory=dict)
    envnoathost: str = "me"
    percenthack: frozenset[str] = frozenset()

    @classmethod
    def from_control(cls, control: ControlFiles) -> "Rewriter":
        me = control.value("me", "localhost") or "localhost"
        if control.exists("locals"):
            local_domains = control.lines("locals")
        else:
            local_domains = [me]
        return cls(
            locals=frozenset(d.strip().lower() for d in local_domains),
            virtualdomains=parse_virtualdomains(control.lines("virtualdomains")),
            envnoathost=control.value("envnoathost", me) or me,
            percenthack=frozenset(d.strip().lower() for d in control.lines("percenthack")),
        )

    def rewrite(self, recipient: str) -> tuple[str, str]:
        """``(channel, address)`` for one envelope recipient."""
        addr = recipient
        at = addr.rfind("@")
        if at == -1:
            addr = f"{addr}@{self.envnoathost}"
            at = addr.rfind("@")
        while addr[at + 1:].lower() in self.percenthack:
            pct = addr.rfind("%", 0, at)
            if pct == -1:
                break
            addr = addr[:pct] + "@" + addr[pct + 1:at]
            at = pct
        domain = addr[at + 1:].lower()
        if domain in self.locals:
            return LOCAL, addr
        for key in self._vdom_keys(addr, at):
            prepend = self.virtualdomains.get(key)
            if prepend is not None:
                if not prepend:
                    break  # an exception: deliver remotely
                return LOCAL, f"{prepend}-{addr}"
        return REMOTE, addr

    @staticmethod
    def _vdom_keys(addr: str, at: int) -> list[str]:
        """Lookup keys in qmail's order: address, domain, .parents, catch-all."""
        lower = addr.lower()
        keys = [lower, lower[at + 1:]]
        keys += [lower[i:] for i in range(at + 1, len(lower)) if lower[i] == "."]
        keys.append("")
        return keys


@dataclass
class TodoResult:
    """What one todo file became."""

    msgid: int
    envelope: Envelope
    size: int
    recipients: list[tuple[str, str, str]]   # (channel, original, rewritten)
    birth: float | None = None               # mtime of the info file just written

    def channels(self) -> list[str]:
        present = {channel for channel, _, _ in self.recipients}
        return [c for c in CHANNELS if c in present]

    def channel_bytes(self, channel: str) -> bytes:
        """What was written to the *channel* file (all records ``T``): the
        first delivery pass needs not read it back."""
        return recipient_bytes([a for c, _, a in self.recipients if c == channel])


def list_ids(queue: QueueDir, kind: str) -> list[int]:
    """Message ids with a file in directory *kind* (split or flat), sorted."""
    base = queue.path / kind
    ids: list[int] = []
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return ids
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            try:
                names = os.listdir(entry.path)
            except FileNotFoundError:
                continue
            ids.extend(int(n) for n in names if n.isdigit())
        elif entry.name.isdigit():
            ids.append(int(entry.name))
    return sorted(ids)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_new(path, data: bytes, *, fsync: bool = True, mode: int = 0o600) -> float:
    """Create *path* exclusively with *data*, fsynced before returning; the
    file's mtime (for ``info``: the message's birth)."""
    return write_file(path, data, flags=os.O_CREAT | os.O_EXCL, mode=mode, fsync=fsync)


def _write_fresh(path: str, data: bytes, fsync: bool) -> float:
    """:func:`write_new`, replacing a stale file that an interrupted earlier
    run left behind (upstream unlinks first; here the common case, no such
    file, costs no failed unlink)."""
    try:
        return write_new(path, data, fsync=fsync)
    except FileExistsError:
        _unlink(path)
        return write_new(path, data, fsync=fsync)


def process_todo(queue: QueueDir, msgid: int, rewriter: Rewriter, *,
                 fsync: bool = True) -> TodoResult | None:
    """Preprocess one message (blocking).  None when the todo file is gone.

    Upstream's order: stale local/remote/info files of an interrupted
    earlier run go (here: a channel this message does not use is unlinked,
    the others are replaced as they are written), info, local and remote
    are written and fsynced, then ``intd`` and ``todo`` are unlinked
    (qmail-clean's order).  Until ``todo`` goes, start-up leaves the
    message to todo processing, so a stale file is never delivered from.
    """
    try:
        with open(queue.file("todo", msgid), "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    try:
        envelope = Envelope.from_todo(data)
    except EnvelopeError as exc:
        raise TodoError(f"unknown record type in {queue.file('todo', msgid)}: {exc}") from exc
    try:
        size = os.stat(queue.file("mess", msgid)).st_size
    except OSError as exc:
        raise TodoError(f"unable to stat {queue.file('mess', msgid)}") from exc
    recipients = []
    per_channel: dict[str, list[str]] = {c: [] for c in CHANNELS}
    for original in envelope.recipients:
        channel, address = rewriter.rewrite(original)
        recipients.append((channel, original, address))
        per_channel[channel].append(address)
    for channel in CHANNELS:
        if not per_channel[channel]:
            _unlink(queue.file(channel, msgid))
    birth = _write_fresh(queue.file("info", msgid), envelope.info_bytes(), fsync)
    for channel in CHANNELS:
        if per_channel[channel]:
            _write_fresh(queue.file(channel, msgid), recipient_bytes(per_channel[channel]),
                         fsync)
    _unlink(queue.file("intd", msgid))
    _unlink(queue.file("todo", msgid))
    return TodoResult(msgid, envelope, size, recipients, birth)
