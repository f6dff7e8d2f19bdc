"""Control-file lists in their text, ``.cdb`` and ``.sql`` forms, and
upstream's ``address_match()`` over them.

The seed's "IndiMail Control Files Formats": a list such as ``badmailfrom``
may exist as ``badmailfrom.cdb`` (built by ``qmail-cdb``: keys lower-cased,
values empty), as ``badmailfrom.sql`` (one line
``server:user:password:database:table``; the table has an ``email`` column
and is created when missing) and as the plain text file.  All existing
forms are searched, cdb first, then MySQL, then the text; the first hit
wins.  Lookups are case-insensitive.

Nothing here blocks the reactor: a form is re-read (in a worker thread)
only when a ``stat`` shows that its file changed, and every MySQL query
runs in a worker thread over a small per-server connection pool.  Files
are stat'ed at most once per :data:`CHECK_INTERVAL` seconds, so an edit
takes effect within a second (upstream reads them once per session).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import cdblib
from twisted.internet import defer, threads

from indimail.config.control import strip_lines
from indimail.config.wildmat import wildmat
from indimail.fastlog import Logger

log = Logger()

# upstream sqlmatch.c create_sqltable()
CREATE_TABLE = ("CREATE TABLE {table} (email char(64) NOT NULL, timestamp TIMESTAMP "
                "DEFAULT CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP NOT NULL, "
                "PRIMARY KEY (email), INDEX timestamp (timestamp))")
ER_NO_SUCH_TABLE = 1146
CHECK_INTERVAL = 1.0
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_$]+(\.[A-Za-z0-9_$]+)?$")


class ListError(Exception):
    """A list could not be searched (MySQL down, bad ``.sql`` file): the
    caller answers 451 as upstream's ``err_addressmatch()`` does."""


def plugin_reactor(setup) -> Any:
    """*setup*'s reactor, else the global one (imported only when needed)."""
    reactor = getattr(setup, "reactor", None) if setup is not None else None
    if reactor is None:   # plugins built without one (unit harnesses) share the global one
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    return reactor


def in_thread(reactor, f: Callable, *args) -> defer.Deferred:
    """Run *f* in the reactor's thread pool."""
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)


# -- a file re-parsed when it changes -------------------------------------------------
def _stamp(path: Path):
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class WatchedFile:
    """The parsed content of one file; ``get()`` stats it and re-parses it in a
    thread when it changed.  A missing file is ``None`` at no thread cost."""

    def __init__(self, path: Path, parse: Callable[[bytes], object], reactor,
                 interval: float = CHECK_INTERVAL):
        self.path = Path(path)
        self.parse = parse
        self.reactor = reactor
        self.interval = interval
        self._stamp: object = ()      # never equal to a real stamp or None
        self._value: object = None
        self._checked = float("-inf")

    def known_missing(self) -> bool:
        """Whether the file was absent when last looked at, within the
        interval: :meth:`get` would answer None without a stat, so a caller
        may skip it (and its coroutine) altogether."""
        return (self._stamp is None
                and self.reactor.seconds() - self._checked < self.interval)

    async def get(self) -> object:
        now = self.reactor.seconds()
        if now - self._checked < self.interval and self._stamp != ():
            return self._value
        self._checked = now
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return self._value
        if stamp is None:
            value = None
        else:
            value = await in_thread(self.reactor, self._load)
        self._stamp, self._value = stamp, value
        return value

    def _load(self) -> object:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return self.parse(data)


class ControlWatch:
    """Control files a variable may rename, each re-read in a thread when it
    changes (the reactor only stats them, at most every *interval* seconds)."""

    def __init__(self, control, parse, reactor, interval: float = CHECK_INTERVAL):
        self.directory = Path(control.directory)
        self.parse = parse
        self.reactor = reactor
        self.interval = interval
        self._files: dict[str, WatchedFile] = {}

    def known_missing(self, name: str) -> bool:
        """Whether file *name* is known to be absent (see :meth:`WatchedFile.known_missing`)."""
        watched = self._files.get(name)
        return watched is not None and watched.known_missing()

    async def get(self, name: str):
        watched = self._files.get(name)
        if watched is None:
            watched = self._files[name] = WatchedFile(self.directory / name, self.parse,
                                                      self.reactor, self.interval)
        return await watched.get()


def _text(data: bytes) -> tuple[list[str], frozenset[str]]:
    """A text list's lines as written and its lower-cased keys."""
    lines = strip_lines(data)
    return lines, frozenset(line.strip().lower() for line in lines)


def _cdb(data: bytes):
    try:
        return cdblib.Reader(data)
    except Exception as exc:
        raise ListError(f"not a cdb file ({exc})") from exc


# -- the MySQL form -------------------------------------------------------------------
@dataclass(frozen=True)
class SqlConfig:
    """One ``name.sql`` file: ``server:user:password:database:table``.

    upstream reads exactly these five fields; a sixth, the TCP port (default
    3306), is our addition; a server starting with ``/`` is a Unix socket."""

    host: str
    user: str
    password: str
    database: str
    table: str
    port: int = 3306

    @classmethod
    def parse(cls, data: bytes) -> "SqlConfig":
        lines = strip_lines(data)
        fields = lines[0].strip().split(":") if lines else []
        if len(fields) < 5 or not fields[4]:
            raise ListError("Invalid database config in control file")
        table = fields[4]
        if not _TABLE_NAME.match(table):
            raise ListError(f"invalid table name {table!r}")
        port = 3306
        if len(fields) > 5 and fields[5]:
            try:
                port = int(fields[5])
            except ValueError:
                raise ListError(f"invalid port {fields[5]!r}") from None
        return cls(fields[0] or "localhost", fields[1], fields[2], fields[3], table, port)

    def connect_kwargs(self) -> dict:
        kwargs: dict = {"user": self.user, "password": self.password,
                        "database": self.database, "charset": "utf8mb4",
                        "connect_timeout": 30, "autocommit": True}
        if self.host.startswith("/"):
            kwargs["unix_socket"] = self.host
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.port
        return kwargs


class SqlPool:
    """Idle PyMySQL connections to one server, used from worker threads only."""

    def __init__(self, kwargs: dict):
        self.kwargs = kwargs
        self._idle: list = []
        self._lock = threading.Lock()

    def _take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        import pymysql
        return pymysql.connect(**self.kwargs)

    def _give(self, conn) -> None:
        with self._lock:
            if len(self._idle) < 4:
                self._idle.append(conn)
                return
        conn.close()

    def run(self, f: Callable, *args):
        """``f(connection, *args)`` with one retry on a fresh connection when
        an idle one turned out to be dead."""
        import pymysql
        for attempt in (1, 2):
            conn = self._take()
            try:
                result = f(conn, *args)
            except pymysql.err.OperationalError:
                conn.close()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            self._give(conn)
            return result

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            try:
                conn.close()
            except Exception:
                pass


_pools: dict[tuple, SqlPool] = {}
_pools_lock = threading.Lock()


def sql_pool(config: SqlConfig) -> SqlPool:
    """The process-wide pool for *config*'s server (upstream keeps one
    connection per process too)."""
    kwargs = config.connect_kwargs()
    key = tuple(sorted(kwargs.items()))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = SqlPool(kwargs)
        return pool


def close_sql_pools() -> None:
    """Close every pooled MySQL connection (service stop, tests)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def sql_contains(config: SqlConfig, keys: list[str]) -> bool:
    """Blocking: whether any of *keys* is in the table's ``email`` column;
    creates the table (upstream's DDL) when it does not exist."""
    import pymysql

    def query(conn) -> bool:
        marks = ",".join(["%s"] * len(keys))
        with conn.cursor() as cur:
            try:
                cur.execute(f"SELECT 1 FROM {config.table} WHERE email IN ({marks}) LIMIT 1",
                            keys)
            except pymysql.err.ProgrammingError as exc:
                if exc.args and exc.args[0] == ER_NO_SUCH_TABLE:
                    cur.execute(CREATE_TABLE.format(table=config.table))
                    return False
                raise
            return cur.fetchone() is not None
    try:
        return sql_pool(config).run(query)
    except pymysql.err.MySQLError as exc:
        raise ListError(f"{config.host}/{config.database}.{config.table}: {exc}") from exc


# -- the public lists -----------------------------------------------------------------
class ControlList:
    """A control-file list (``name``, ``name.cdb``, ``name.sql``): keys looked
    up case-insensitively in every form that exists, cdb, sql, then text."""

    def __init__(self, control, name: str, *, setup=None, reactor=None,
                 check_interval: float = CHECK_INTERVAL):
        self.control = control
        self.name = name
        self.reactor = reactor or plugin_reactor(setup)
        path = Path(control.directory) / name   # an absolute *name* stays absolute
        self.path = path
        args = (self.reactor, check_interval)
        self._cdb = WatchedFile(path.with_name(path.name + ".cdb"), _cdb, *args)
        self._sql = WatchedFile(path.with_name(path.name + ".sql"), SqlConfig.parse, *args)
        self._text = WatchedFile(path, _text, *args)

    async def contains(self, *keys: str) -> bool:
        """Whether any of *keys* is listed (empty keys never are)."""
        wanted = [k.lower() for k in keys if k]
        if not wanted:
            return False
        reader = await self._cdb.get()
        if reader is not None:
            for key in wanted:
                if reader.get(key.encode("utf-8", "surrogateescape")) is not None:
                    return True
        config = await self._sql.get()
        if config is not None:
            if await in_thread(self.reactor, sql_contains, config, wanted):
                return True
        text = await self._text.get()
        return text is not None and any(key in text[1] for key in wanted)

    async def lines(self) -> list[str]:
        """The text form's meaningful lines, as written (QREGEX patterns)."""
        text = await self._text.get()
        return list(text[0]) if text is not None else []

    def known_missing(self) -> bool:
        """Whether no form of the list existed when last looked at, within
        the interval (then :meth:`contains` is False and :meth:`lines` empty)."""
        return (self._text.known_missing() and self._cdb.known_missing()
                and self._sql.known_missing())

    async def exists(self) -> bool:
        """Whether any form of the list exists."""
        for watched in (self._cdb, self._sql, self._text):
            if await watched.get() is not None:
                return True
        return False


def wildmat_lines(patterns: Iterable[str], value: str) -> bool:
    """upstream ``wildmat_match()`` over a patterns file: a line ``!pat``
    excludes what an earlier line matched; the last deciding line wins."""
    verdict = False
    for line in patterns:
        line = line.strip()
        positive = not line.startswith("!")
        if not positive:
            line = line[1:]
        if verdict != positive and wildmat(line.lower(), value):
            verdict = positive
    return verdict


_regex_cache: dict[str, re.Pattern | None] = {}


def _compile(pattern: str) -> re.Pattern | None:
    if pattern not in _regex_cache:
        if len(_regex_cache) > 4096:
            _regex_cache.clear()
        try:
            _regex_cache[pattern] = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            log.warn("bad regular expression {pattern!r}: {err}", pattern=pattern, err=exc)
            _regex_cache[pattern] = None
    return _regex_cache[pattern]


def regex_search(pattern: str, text: str) -> bool:
    """upstream ``matchregex()``: POSIX extended, case-insensitive, unanchored;
    a pattern that does not compile matches nothing."""
    compiled = _compile(pattern)
    return bool(compiled is not None and compiled.search(text))


def regex_lines(patterns: Iterable[str], value: str) -> bool:
    """upstream ``regex_match()`` (QREGEX): any line's regex matches; a
    matching ``!regex`` line refuses at once; a line starting ``@`` means
    ``.*@...``."""
    found = False
    for line in patterns:
        line = line.strip()
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        if line.startswith("@"):
            line = ".*" + line
        if regex_search(line, value):
            if negate:
                return False
            found = True
    return found


class PatternList:
    """A ``*patterns`` control file: wildmat lines with ``!`` negation (or,
    with *regex*, QREGEX regular expressions)."""

    def __init__(self, control, name: str, *, setup=None, reactor=None,
                 check_interval: float = CHECK_INTERVAL):
        self.control = control
        self.name = name
        self.reactor = reactor or plugin_reactor(setup)
        self._lines = WatchedFile(Path(control.directory) / name, strip_lines, self.reactor,
                                  check_interval)

    async def lines(self) -> list[str]:
        return list(await self._lines.get() or [])

    def known_missing(self) -> bool:
        return self._lines.known_missing()

    async def matches(self, value: str, *, regex: bool = False) -> bool:
        lines = await self._lines.get()
        if not lines:
            return False
        value = value.lower()
        return regex_lines(lines, value) if regex else wildmat_lines(lines, value)


# -- upstream address_match() ---------------------------------------------------------
def address_keys(address: str) -> list[str]:
    """The keys an address is looked up by: itself and ``@domain`` (from the
    last ``@``), lower-cased."""
    address = address.lower()
    keys = [address]
    at = address.rfind("@")
    if at >= 0:
        keys.append(address[at:])
    return keys


class QregexSwitch:
    """``QREGEX`` (a non-zero number) or the ``qregex`` control file: the
    lists hold regular expressions instead of addresses and wildmat patterns."""

    def __init__(self, control, reactor, check_interval: float = CHECK_INTERVAL):
        self._file = WatchedFile(Path(control.directory) / "qregex", strip_lines, reactor,
                                 check_interval)

    async def enabled(self, env: Mapping[str, str]) -> bool:
        value = env.get("QREGEX")
        if value is None:
            lines = await self._file.get()
            value = lines[0] if lines else "0"
        try:
            return int(value.strip() or "0") != 0
        except ValueError:
            return False


class AddressList:
    """One upstream list family, e.g. ``badmailfrom`` + ``badmailpatterns``,
    whose file names the variables ``BADMAILFROM``/``BADMAILPATTERNS`` may
    override (read from each session's environment, so envrules can too).

    ``match()`` is ``address_match()``: the value lower-cased; its exact
    form and ``@domain`` in the cdb, sql and text forms; then the patterns
    file (wildmat); with QREGEX the text lines are regular expressions and
    the patterns file is not used."""

    def __init__(self, control, name: str, variable: str | None = None,
                 patterns: str | None = None, patterns_variable: str | None = None,
                 *, setup=None, reactor=None, domain_keys: bool = True,
                 check_interval: float = CHECK_INTERVAL):
        self.control = control
        self.check_interval = check_interval
        self.name = name
        self.variable = variable
        self.patterns = patterns
        self.patterns_variable = patterns_variable
        self.domain_keys = domain_keys
        self.reactor = reactor or plugin_reactor(setup)
        self.qregex = QregexSwitch(control, self.reactor, check_interval)
        self._lists: dict[str, ControlList] = {}
        self._patterns: dict[str, PatternList] = {}

    def list_name(self, env: Mapping[str, str]) -> str:
        value = env.get(self.variable) if self.variable else None
        return value.strip() if value and value.strip() else self.name

    def patterns_name(self, env: Mapping[str, str]) -> str | None:
        value = env.get(self.patterns_variable) if self.patterns_variable else None
        return value.strip() if value and value.strip() else self.patterns

    def _list(self, name: str) -> ControlList:
        found = self._lists.get(name)
        if found is None:
            found = self._lists[name] = ControlList(self.control, name, reactor=self.reactor,
                                                    check_interval=self.check_interval)
        return found

    def _pattern(self, name: str) -> PatternList:
        found = self._patterns.get(name)
        if found is None:
            found = self._patterns[name] = PatternList(
                self.control, name, reactor=self.reactor, check_interval=self.check_interval)
        return found

    def known_empty(self, env: Mapping[str, str]) -> bool:
        """Whether :meth:`match` is False for every value because none of the
        files *env* names existed when last looked at (within the interval).

        Most families are empty on most servers; their hooks ask this first
        and answer at once, without a coroutine per list per command."""
        listed = self._lists.get(self.list_name(env))
        if listed is None or not listed.known_missing():
            return False
        patterns = self.patterns_name(env)
        if patterns is None:
            return True
        found = self._patterns.get(patterns)
        return found is not None and found.known_missing()

    async def match(self, value: str, env: Mapping[str, str]) -> bool:
        value = value.lower()
        listed = self._list(self.list_name(env))
        keys = address_keys(value) if self.domain_keys else [value]
        if value and await listed.contains(*keys):
            return True
        if await self.qregex.enabled(env):
            return regex_lines(await listed.lines(), value)
        patterns = self.patterns_name(env)
        if patterns is None:
            return False
        return await self._pattern(patterns).matches(value)


__all__ = ["AddressList", "ControlList", "ControlWatch", "ListError", "PatternList", "SqlConfig",
           "WatchedFile", "address_keys", "close_sql_pools", "plugin_reactor", "regex_lines",
           "regex_search",
           "wildmat_lines"]
