"""Read-only MySQL/MariaDB queries spoken on the reactor, without a thread.

Every RCPT check and AUTH asks the store for one user.  Through
``adbapi`` that is a trip to a pool thread and back: under load the reactor
thread then waits for the GIL behind the pool threads, and a lookup cost
about three times the CPU of the query itself.  This module speaks the MySQL
client/server protocol directly on the reactor for the one job that matters:
a text-protocol ``SELECT`` and its rows.  Writes, DDL and transactions stay
on ``adbapi``.

Only what the hot path needs is spoken: protocol 4.1 handshake, the
``mysql_native_password`` and ``caching_sha2_password`` (fast path)
authentications, ``COM_QUERY`` with a text result set, ``COM_QUIT``.  A
server that wants anything else (TLS, another plugin, a full caching_sha2
exchange) raises :class:`WireUnsupported`, and the caller uses its thread
path instead; so does any other failure (:class:`WireError`).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import deque
from typing import Sequence

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, UNIXClientEndpoint
from twisted.internet.error import ConnectionDone

from indimail.fastlog import Logger
from indimail.sendnow import send_now

log = Logger()

# capability flags (client/server protocol, "Capabilities Flags")
CLIENT_LONG_PASSWORD = 0x1
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
WANTED = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_CONNECT_WITH_DB | CLIENT_PROTOCOL_41
          | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH)
REQUIRED = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION

COM_QUIT = 0x01
COM_QUERY = 0x03
UTF8MB4_GENERAL_CI = 45
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x200
MAX_PACKET = 0xFFFFFF
NATIVE = "mysql_native_password"
SHA2 = "caching_sha2_password"


class WireError(Exception):
    """The query did not complete on the wire (the caller may retry elsewhere)."""


class WireUnsupported(WireError):
    """The server needs something this client does not speak."""


class ServerError(WireError):
    """An ERR packet: ``code`` and the server's message."""

    def __init__(self, code: int, message: str):
        super().__init__(f"({code}) {message}")
        self.code = code


# -- packet pieces ---------------------------------------------------------------

def scramble_native(password: bytes, salt: bytes) -> bytes:
    """mysql_native_password: SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))."""
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(salt[:20] + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix))


def scramble_sha2(password: bytes, salt: bytes) -> bytes:
    """caching_sha2_password's fast path: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + salt)."""
    if not password:
        return b""
    p1 = hashlib.sha256(password).digest()
    p2 = hashlib.sha256(p1).digest()
    mix = hashlib.sha256(p2 + salt[:20]).digest()
    return bytes(a ^ b for a, b in zip(p1, mix))


SCRAMBLES = {NATIVE: scramble_native, SHA2: scramble_sha2}


def lenenc_int(data: bytes, pos: int) -> tuple[int | None, int]:
    """A length-encoded integer at *pos* (None for 0xFB, SQL NULL) and the next position."""
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    if first == 0xFC:
        return struct.unpack_from("<H", data, pos + 1)[0], pos + 3
    if first == 0xFD:
        return int.from_bytes(data[pos + 1:pos + 4], "little"), pos + 4
    return struct.unpack_from("<Q", data, pos + 1)[0], pos + 9


def parse_row(data: bytes, columns: int) -> tuple:
    """One text-protocol row: each value a str, or None for SQL NULL.
    Every user lookup parses one per user, so a value shorter than 251
    bytes (one length byte, nearly all of them) takes no function call."""
    values, pos = [], 0
    for _ in range(columns):
        length = data[pos]
        if length < 0xFB:
            pos += 1
        else:
            length, pos = lenenc_int(data, pos)
            if length is None:
                values.append(None)
                continue
        values.append(data[pos:pos + length].decode("utf-8", "surrogateescape"))
        pos += length
    return tuple(values)


def parse_error(data: bytes) -> ServerError:
    """An ERR packet (0xFF, code, '#' and SQL state, message)."""
    code = struct.unpack_from("<H", data, 1)[0]
    message = data[3:]
    if message[:1] == b"#":
        message = message[6:]
    return ServerError(code, message.decode("utf-8", "replace"))


def ok_status(data: bytes) -> int:
    """The server status flags of an OK packet."""
    _, pos = lenenc_int(data, 1)    # affected rows
    _, pos = lenenc_int(data, pos)  # last insert id
    return struct.unpack_from("<H", data, pos)[0] if len(data) >= pos + 2 else 0


def is_eof(data: bytes) -> bool:
    return data[:1] == b"\xfe" and len(data) < 9


# characters no SQL literal needs escaped in either escaping mode
_PLAIN = re.compile(r"[^\\\0\n\r\x1a'\"]*")


def quote(value, no_backslash_escapes: bool = False) -> str:
    """*value* as an SQL literal (utf8mb4 connection): str, int, None."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text):        # most names: nothing to escape
        return "'" + text + "'"
    if no_backslash_escapes:
        return "'" + text.replace("'", "''") + "'"
    out = text.replace("\\", "\\\\").replace("\0", "\\0").replace("\n", "\\n")
    out = out.replace("\r", "\\r").replace("\x1a", "\\Z").replace("'", "\\'").replace('"', '\\"')
    return "'" + out + "'"


def interpolate(sql: str, args: Sequence, no_backslash_escapes: bool = False) -> str:
    """PyMySQL's ``%s`` paramstyle: each ``%s`` replaced by an escaped literal."""
    return sql % tuple(quote(a, no_backslash_escapes) for a in args)


# -- one connection ---------------------------------------------------------------

class MysqlWireProtocol(protocol.Protocol):
    """One authenticated connection running one query at a time.

    ``ready`` fires with the protocol once authenticated (or fails);
    :meth:`query` returns a Deferred of the rows (a list of tuples)."""

    def __init__(self, user: str, password: str, database: str):
        self.user = user.encode()
        self.password = password.encode()
        self.database = database.encode()
        self.ready: defer.Deferred = defer.Deferred()
        self.no_backslash_escapes = False
        self.closed = False
        self._buffer = bytearray()
        self._partial = b""
        self._seq = 0
        self._state = "greeting"
        self._plugin = NATIVE
        self._salt = b""
        self._pending: defer.Deferred | None = None
        self._columns = 0
        self._skip = 0
        self._rows: list[tuple] = []
        self.gone = False
        self.lost: defer.Deferred | None = None

    # -- framing -------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        buf = self._buffer
        while len(buf) >= 4:
            length = buf[0] | buf[1] << 8 | buf[2] << 16
            if len(buf) < 4 + length:
                break
            self._seq = (buf[3] + 1) & 0xFF
            payload = bytes(buf[4:4 + length])
            del buf[:4 + length]
            if length == MAX_PACKET:    # continued in the next packet
                self._partial += payload
                continue
            if self._partial:
                payload, self._partial = self._partial + payload, b""
            try:
                self._packet(payload)
            except WireError as exc:
                self._fail(exc)
                return
            except Exception as exc:   # a packet we could not parse: drop the connection
                self._fail(WireError(f"bad packet from the server: {exc!r}"))
                return

    def _send(self, payload: bytes, seq: int) -> None:
        header = struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF])
        send_now(self.transport, header + payload)   # a query leaves before the reactor turns

    # -- states --------------------------------------------------------

    def _packet(self, data: bytes) -> None:
        getattr(self, "_on_" + self._state)(data)

    def _on_greeting(self, data: bytes) -> None:
        if data[:1] == b"\xff":
            raise parse_error(data)
        if data[0] != 10:
            raise WireUnsupported(f"handshake protocol {data[0]}")
        pos = data.index(b"\0", 1) + 1          # server version
        pos += 4                                # connection id
        salt = data[pos:pos + 8]
        pos += 9                                # salt part 1 + filler
        caps = struct.unpack_from("<H", data, pos)[0]
        pos += 2
        if len(data) > pos:
            pos += 3                            # charset, status flags
            caps |= struct.unpack_from("<H", data, pos)[0] << 16
            pos += 2
            salt_len = data[pos]
            pos += 11                           # salt length + 10 reserved
            if caps & CLIENT_SECURE_CONNECTION:
                part2 = max(12, salt_len - 9)     # then a NUL
                salt += data[pos:pos + part2]
                pos += part2 + 1
            if caps & CLIENT_PLUGIN_AUTH and pos < len(data):
                self._plugin = data[pos:].split(b"\0", 1)[0].decode()
        if caps & REQUIRED != REQUIRED:
            raise WireUnsupported("server without protocol 4.1 secure connections")
        self._salt = salt
        plugin = self._plugin if self._plugin in SCRAMBLES else NATIVE
        auth = SCRAMBLES[plugin](self.password, salt)
        flags = WANTED & (caps | CLIENT_CONNECT_WITH_DB)
        payload = (struct.pack("<IIB", flags, MAX_PACKET, UTF8MB4_GENERAL_CI) + b"\0" * 23
                   + self.user + b"\0" + bytes([len(auth)]) + auth
                   + self.database + b"\0")
        if flags & CLIENT_PLUGIN_AUTH:
            payload += plugin.encode() + b"\0"
        self._plugin = plugin
        self._state = "auth"
        self._send(payload, self._seq)

    def _on_auth(self, data: bytes) -> None:
        kind = data[:1]
        if kind == b"\x00":
            self.no_backslash_escapes = bool(ok_status(data) & SERVER_STATUS_NO_BACKSLASH_ESCAPES)
            self._state = "idle"
            self.ready.callback(self)
        elif kind == b"\xff":
            raise parse_error(data)
        elif kind == b"\xfe":                   # auth switch request
            plugin, _, salt = data[1:].partition(b"\0")
            plugin = plugin.decode()
            if plugin not in SCRAMBLES:
                raise WireUnsupported(f"authentication plugin {plugin}")
            self._plugin = plugin
            self._salt = salt.rstrip(b"\0")
            self._send(SCRAMBLES[plugin](self.password, self._salt), self._seq)
        elif kind == b"\x01" and self._plugin == SHA2 and data[1:2] == b"\x03":
            pass                                # fast auth succeeded; the OK follows
        else:
            raise WireUnsupported(f"authentication step {data[:2]!r} of {self._plugin}")

    def _on_idle(self, data: bytes) -> None:
        raise WireError(f"unexpected packet {data[:1]!r} with no query out")

    def _on_result(self, data: bytes) -> None:
        kind = data[:1]
        if kind == b"\x00":
            self._finish([], data)
        elif kind == b"\xff":
            self._finish_error(parse_error(data))
        elif kind == b"\xfb":
            raise WireUnsupported("LOCAL INFILE request")
        else:
            self._columns, _ = lenenc_int(data, 0)
            self._skip = self._columns
            self._rows = []
            self._state = "columns"

    def _on_columns(self, data: bytes) -> None:
        if self._skip:
            self._skip -= 1
        elif is_eof(data):
            self._state = "rows"
        else:
            raise WireError("column definitions without their EOF")

    def _on_rows(self, data: bytes) -> None:
        if is_eof(data):
            status = struct.unpack_from("<H", data, 3)[0] if len(data) >= 5 else 0
            self.no_backslash_escapes = bool(status & SERVER_STATUS_NO_BACKSLASH_ESCAPES)
            self._finish(self._rows)
        elif data[:1] == b"\xff":
            self._finish_error(parse_error(data))
        else:
            self._rows.append(parse_row(data, self._columns))

    # -- queries -------------------------------------------------------

    def query(self, sql: str) -> defer.Deferred:
        """The rows of *sql* (a list of tuples of str/None)."""
        if self.closed or self._state != "idle":
            return defer.fail(WireError("connection not ready" if not self.closed
                                        else "connection closed"))
        self._pending = d = defer.Deferred(canceller=self._cancel)
        self._state = "result"
        self._send(bytes([COM_QUERY]) + sql.encode("utf-8", "surrogateescape"), 0)
        return d

    def _cancel(self, d: defer.Deferred) -> None:
        """A query given up on (its timeout): the answer may still come, so
        the connection cannot be reused."""
        self._pending = None
        self.closed = True
        self._state = "closed"
        self.transport.loseConnection()

    def _finish(self, rows: list[tuple], ok: bytes | None = None) -> None:
        if ok is not None:
            self.no_backslash_escapes = bool(ok_status(ok) & SERVER_STATUS_NO_BACKSLASH_ESCAPES)
        d, self._pending, self._rows = self._pending, None, []
        self._state = "idle"
        d.callback(rows)

    def _finish_error(self, error: ServerError) -> None:
        d, self._pending = self._pending, None
        self._state = "idle"
        d.errback(error)

    # -- ending --------------------------------------------------------

    def _fail(self, error: WireError) -> None:
        """A protocol failure: whatever waits fails, the connection goes."""
        self.closed = True
        self._state = "closed"
        if not self.ready.called:
            self.ready.errback(error)
        elif self._pending is not None:
            d, self._pending = self._pending, None
            d.errback(error)
        if self.transport is not None:
            self.transport.loseConnection()

    def quit(self) -> None:
        """Say goodbye and close (nothing may be pending)."""
        if not self.closed:
            self.closed = True
            if self._state == "idle":
                self._send(bytes([COM_QUIT]), 0)
            self._state = "closed"
            self.transport.loseConnection()

    def connectionLost(self, reason=ConnectionDone) -> None:
        self.gone = True
        self.closed = True
        self._state = "closed"
        error = WireError(f"connection lost: {reason.getErrorMessage()}"
                          if hasattr(reason, "getErrorMessage") else "connection lost")
        if not self.ready.called:
            self.ready.errback(error)
        elif self._pending is not None:
            d, self._pending = self._pending, None
            d.errback(error)
        lost, self.lost = self.lost, None
        if lost is not None:
            lost.callback(None)


class _Factory(protocol.Factory):
    def __init__(self, user: str, password: str, database: str):
        self.args = (user, password, database)

    def buildProtocol(self, addr):
        return MysqlWireProtocol(*self.args)


# -- a few connections ---------------------------------------------------------------

class WireReads:
    """Up to *size* reactor-side connections to *backend*'s database, each
    running one read query at a time; more queries wait for a free one.

    :meth:`query` fails with :class:`WireError` for anything short of rows
    (including :class:`ServerError`); the caller falls back to its thread
    path.  After a :class:`WireUnsupported` the reads stay off (``usable``)."""

    def __init__(self, backend, reactor, *, size: int = 2, connect_timeout: float = 5.0,
                 query_timeout: float = 30.0):
        self.backend = backend
        self.reactor = reactor
        self.size = max(1, size)
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self.usable = not backend.ssl
        self._idle: deque[MysqlWireProtocol] = deque()
        self._all: set[MysqlWireProtocol] = set()
        self._connecting = 0
        self._waiting: deque[defer.Deferred] = deque()
        self._closing = False

    def _endpoint(self):
        b = self.backend
        if b.socket:
            return UNIXClientEndpoint(self.reactor, b.socket, timeout=self.connect_timeout)
        cls = TCP6ClientEndpoint if ":" in b.host else TCP4ClientEndpoint
        return cls(self.reactor, b.host, b.port, timeout=self.connect_timeout)

    async def _connect(self) -> MysqlWireProtocol:
        b = self.backend
        self._connecting += 1
        conn = None
        try:
            conn = await self._endpoint().connect(_Factory(b.user, b.password, b.database))
            await conn.ready.addTimeout(self.connect_timeout, self.reactor)
        except Exception as exc:
            if conn is not None and not conn.gone:
                conn.closed = True
                conn.transport.abortConnection()
            if isinstance(exc, WireUnsupported):
                self.usable = False
                log.info("MySQL reads go through threads: {why}", why=exc)
            if isinstance(exc, WireError):
                raise
            raise WireError(f"cannot connect to MySQL: {exc}") from exc
        finally:
            self._connecting -= 1
        if self._closing:
            conn.quit()
            raise WireError("closed")
        self._all.add(conn)
        return conn

    async def _acquire(self) -> MysqlWireProtocol:
        while self._idle:
            conn = self._idle.popleft()
            if not conn.closed:
                return conn
            self._all.discard(conn)
        if len(self._all) + self._connecting < self.size:
            return await self._connect()
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return await d

    def _release(self, conn: MysqlWireProtocol) -> None:
        if conn.closed or self._closing:
            self._all.discard(conn)
            if self._closing and not conn.closed:
                conn.quit()
            conn = None
        if self._waiting:
            d = self._waiting.popleft()
            if conn is not None:
                d.callback(conn)
            else:
                defer.Deferred.fromCoroutine(self._connect()).chainDeferred(d)
        elif conn is not None:
            self._idle.append(conn)

    async def _query(self, sql: str, args: Sequence) -> list[tuple]:
        if not self.usable or self._closing:
            raise WireUnsupported("reactor reads are off")
        conn = await self._acquire()
        try:
            text = interpolate(sql, args, conn.no_backslash_escapes)
            d = conn.query(text)
            d.addTimeout(self.query_timeout, self.reactor)
            try:
                return await d
            except defer.TimeoutError:
                raise WireError(f"query took over {self.query_timeout:g} s") from None
        finally:
            self._release(conn)

    def query(self, sql: str, args: Sequence = ()) -> defer.Deferred:
        """The rows of *sql* with PyMySQL-style ``%s`` *args*."""
        return defer.Deferred.fromCoroutine(self._query(sql, args))

    def close(self) -> defer.Deferred:
        """Close every connection; fires when they are gone."""
        self._closing = True
        waits = []
        for conn in list(self._all):
            if conn.gone:
                continue
            conn.lost = defer.Deferred()
            waits.append(conn.lost)
            if conn.closed:
                conn.transport.loseConnection()
            elif conn._pending is None:
                conn.quit()
            # a connection with a query out quits when it is released
        self._idle.clear()
        self._all.clear()
        while self._waiting:
            self._waiting.popleft().errback(WireError("closed"))
        return defer.DeferredList(waits) if waits else defer.succeed(None)
