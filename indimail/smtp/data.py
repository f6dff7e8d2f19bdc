"""The DATA stream: from SMTP's dot-stuffed CRLF lines to queue bytes.

Only ``<CRLF>.<CRLF>`` ends the message.  A bare LF next to the dot (or
anywhere) never does, so a message cannot smuggle a second one past a
peer that reads line ends differently (SMTP smuggling).

Bare LF: upstream indimail-mta (``smtpd.c`` ``blast()``) answers ``451
Sorry, I received Bare LF. (#4.6.0)`` and drops the connection; that is
the default here too (:attr:`DataDecoder.bare_lf` becomes true and the
protocol gives that reply).  With ``ALLOW_BARELF`` upstream turns a bare LF
into CRLF — which lets ``<LF>.<LF>`` end the data; here a bare LF is
stored as a line end but can never start or end the terminating dot line.

What is stored: lines end in LF (``CRLF`` becomes ``LF``), a leading dot is
removed (dot-unstuffing), a CR not followed by LF is kept.  Past the
*limit* (``DATABYTES``) nothing more is handed out but the stream is still
read to its end, so the client gets its ``552`` in step.  Header lines
starting with ``Received`` or ``Delivered`` are counted as hops.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(rb"[\r\n]")

# states
_START = 0    # at the start of a line (after CRLF)
_MID = 1      # inside a line
_CR = 2       # after a CR that may begin a CRLF
_DOT = 3      # CRLF "."
_DOT_CR = 4   # CRLF "." CR


class DataDecoder:
    """Incremental decoder of one message's DATA bytes."""

    def __init__(self, limit: int = 0, allow_bare_lf: bool = False):
        self.limit = limit              # 0: unlimited
        self.allow_bare_lf = allow_bare_lf
        self.size = 0                   # stored bytes seen (counted past the limit too)
        self.hops = 0
        self.ended = False
        self.bare_lf = False
        self._state = _START
        self._in_header = True
        self._line_head = b""           # first bytes of the current stored line

    @property
    def overflow(self) -> bool:
        return bool(self.limit) and self.size > self.limit

    def feed(self, data: bytes) -> tuple[bytes, int | None]:
        """Decode *data*; returns the bytes to store and, once the message
        has ended (or a bare LF stopped it), the offset in *data* just past
        the last byte consumed — what follows belongs to the next command."""
        fast = self._fast(data)
        if fast is not None:
            return fast, None
        if len(data) > 1 and data.endswith(b"\r"):   # a packet cut inside a CRLF
            fast = self._fast(data[:-1])
            if fast is not None:
                tail, _ = self.feed(data[-1:])      # just remembers the CR
                return fast + tail, None
        cut = data.find(b"\r\n.")
        if cut > 0:     # the lines before the first dot line (often ".\r\n" itself)
            head = self._fast(data[:cut + 2])
            if head is not None:
                rest, end = self._slow(data[cut + 2:])
                return head + rest, None if end is None else end + cut + 2
        return self._slow(data)

    def _slow(self, data: bytes) -> tuple[bytes, int | None]:
        """:meth:`feed` byte by byte (line by line where it can)."""
        out: list[bytes] = []
        i, n = 0, len(data)
        state = self._state
        while i < n:
            if state == _MID or state == _START and data[i:i + 1] not in (b".", b"\r", b"\n"):
                m = _SPECIAL.search(data, i)
                j = m.start() if m else n
                if j > i:
                    out.append(data[i:j])
                    i = j
                    state = _MID
                    continue
            ch = data[i]
            i += 1
            if state == _START:
                if ch == 0x2E:      # "."
                    state = _DOT
                elif ch == 0x0D:
                    state = _CR
                else:               # LF right after CRLF
                    state = self._lone_lf(out, b"\n")
            elif state == _MID:
                if ch == 0x0D:
                    state = _CR
                else:
                    state = self._lone_lf(out, b"\n")
            elif state == _CR:
                if ch == 0x0A:
                    out.append(b"\n")
                    state = _START
                elif ch == 0x0D:
                    out.append(b"\r")
                else:
                    out.append(b"\r" + bytes((ch,)))
                    state = _MID
            elif state == _DOT:
                if ch == 0x0D:
                    state = _DOT_CR
                elif ch == 0x0A:
                    state = self._lone_lf(out, b".\n")
                else:               # dot-unstuffing: the leading dot goes
                    out.append(bytes((ch,)))
                    state = _MID
            else:  # _DOT_CR
                if ch == 0x0A:
                    self.ended = True
                    self._state = _START
                    return self._emit(out), i
                out.append(b".\r")
                if ch == 0x0D:
                    state = _CR
                else:
                    out.append(bytes((ch,)))
                    state = _MID
            if self.bare_lf:
                self._state = state
                return self._emit(out), i
        self._state = state
        return self._emit(out), None

    def _fast(self, data: bytes) -> bytes | None:
        """The common case in one pass of C code: whole CRLF lines with no
        bare LF, no dot at a line start and no CR at the very end.  None when
        the byte-by-byte path is needed."""
        if self._state not in (_START, _MID) or not data or data.endswith(b"\r"):
            return None
        if b"\r\n." in data or (self._state == _START and data[:1] in (b".", b"\n")):
            return None
        if data.count(b"\n") != data.count(b"\r\n"):
            return None
        self._state = _START if data.endswith(b"\n") else _MID
        return self._emit([data.replace(b"\r\n", b"\n")])

    def _lone_lf(self, out: list[bytes], stored: bytes) -> int:
        """A LF without its CR: refused, or (ALLOW_BARELF) a plain line end
        that leaves the decoder mid-line so no dot line can follow it."""
        if not self.allow_bare_lf:
            self.bare_lf = True
            return _MID
        out.append(stored)
        return _MID

    def _emit(self, out: list[bytes]) -> bytes:
        chunk = b"".join(out)
        if not chunk:
            return b""
        if self._in_header:
            self._scan_header(chunk)
        self.size += len(chunk)
        if self.overflow:   # the message fails at its end: store nothing more
            return b""
        return chunk

    def _scan_header(self, chunk: bytes) -> None:
        pos = 0
        while self._in_header and pos < len(chunk):
            nl = chunk.find(b"\n", pos)
            piece = chunk[pos:] if nl < 0 else chunk[pos:nl]
            if len(self._line_head) < 9:
                self._line_head += piece[: 9 - len(self._line_head)]
            if nl < 0:
                return
            head = self._line_head.lower()
            if not head:
                self._in_header = False
            elif head.startswith(b"received") or head.startswith(b"delivered"):
                self.hops += 1
            self._line_head = b""
            pos = nl + 1
