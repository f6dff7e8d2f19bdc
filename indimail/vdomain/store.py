"""The virtual-domain store: IndiMail's tables behind one asynchronous interface.

Every method returns a Deferred and runs its SQL in the connection pool's
threads (``twisted.enterprise.adbapi``), never on the reactor thread; a
long-running service's store (``reactor_reads``) on MySQL reads users over
:mod:`.mysqlwire` instead, a non-blocking client on the reactor.  The same
code serves SQLite and MySQL/MariaDB; the backend supplies the parameter style
and DDL.  Names and domains are lower-cased, as IndiMail's admin commands do,
so lookups agree on both backends (MySQL compares case-insensitively, SQLite
does not).

Domains are the rows of ``dir_control`` (IndiMail's per-domain directory
bookkeeping, one row per domain) plus any domain users live in, alias domains
the rows of ``aliasdomain``.
"""

from __future__ import annotations

import datetime
import functools
import time
from typing import Any, Callable

from twisted.enterprise import adbapi
from twisted.internet import defer, threads

from indimail.fastlog import Logger
from . import schema
from .coalesce import Coalescer
from .backend import Backend, McdEntry, SqliteBackend, backend_for_home
from .mysqlwire import WireError, WireReads
from .records import (FILTER_COLUMNS, LIMIT_COLUMNS, USER_COLUMNS, VFilter, VLimits,
                      VUser)

log = Logger()

ACTIVE, INACTIVE = "indimail", "indibak"
RELAY_CLEAR_MINUTES = 60
USER_READS_PARALLEL = 1   # user-lookup batches in flight at once (the pool has more threads)
PORT_SMTP = 25
# vpopmail/IndiMail's fresh dir_control row: 3 levels of 62 directories each
_DIR_CONTROL_DEFAULTS = (0, 0, 3, 0, 0, 0, 61, 61, 61, 0, 2, 4, 0, 0, 0, "")
_DIR_CONTROL_COLUMNS = ("cur_users", "level_cur", "level_max", "level_start0", "level_start1",
                        "level_start2", "level_end0", "level_end1", "level_end2", "level_mod0",
                        "level_mod1", "level_mod2", "level_index0", "level_index1",
                        "level_index2", "the_dir")


def deferred(method):
    """Make an ``async def`` method return a Deferred, as Twisted callers expect."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return defer.Deferred.fromCoroutine(method(*args, **kwargs))
    return wrapper


class StoreError(Exception):
    """A store operation could not be done; the text says why."""


class UserExists(StoreError):
    """The user is already in indimail or indibak."""


class DomainExists(StoreError):
    """The domain (or alias domain) is already known."""


def _lower(text: str) -> str:
    return (text or "").strip().lower()


def _sqltime(now: float) -> str:
    """*now* as MySQL's TIMESTAMP text, in local time like a SYSTEM time zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))


def _epoch(value: Any) -> float | None:
    """A TIMESTAMP column back as seconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return time.mktime(value.timetuple())
    return time.mktime(time.strptime(str(value), "%Y-%m-%d %H:%M:%S"))


_USER_TABLES = ((ACTIVE, False), (INACTIVE, True))


def _users_select(table: str, keys: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """The SELECT of *keys*' user rows in *table*."""
    where, args = _pairs_where(keys)
    return f"SELECT {', '.join(USER_COLUMNS)} FROM {table} WHERE {where}", args


def _add_users(found: dict, rows, inactive: bool) -> None:
    """Add *rows* as VUsers to *found*, keyed by lower-cased (name, domain)."""
    for row in rows:
        found.setdefault((_lower(row[0]), _lower(row[1])), _user(row, inactive))


def _collect_users(keys: list[tuple[str, str]], select) -> dict:
    """``{(name, domain): VUser}`` of *keys*: indimail first, indibak for
    those not active; *select(sql, args)* returns rows."""
    found: dict = {}
    for table, inactive in _USER_TABLES:
        wanted = [k for k in keys if k not in found]
        if not wanted:
            break
        _add_users(found, select(*_users_select(table, wanted)), inactive)
    return found


def _pairs_where(keys: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """A WHERE clause matching (pw_name, pw_domain) *keys*, grouped by
    domain so each group is a range of the primary key."""
    names: dict[str, list[str]] = {}
    for name, domain in keys:
        names.setdefault(domain, []).append(name)
    clauses, args = [], []
    for domain, group in names.items():
        clauses.append(f"(pw_domain = %s AND pw_name IN ({', '.join(['%s'] * len(group))}))")
        args += [domain, *group]
    return " OR ".join(clauses), args


def _user(row, inactive: bool) -> VUser:
    name, domain, passwd, uid, gid, gecos, home, shell = row
    return VUser(name, domain, passwd or "", int(uid or 0), int(gid or 0), gecos or "",
                 home or "", shell or "NOQUOTA", inactive)


class VStore:
    """IndiMail's user database on one backend."""

    def __init__(self, backend: Backend, *, reactor=None, create_database: bool = False,
                 pool_max: int | None = None, reactor_reads: bool = False):
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.backend = backend
        self.reactor = reactor
        self.create_database = create_database
        self.pool_max = pool_max
        self.pool: adbapi.ConnectionPool | None = None
        self._control_tables: set[str] = set()
        self._passwd_width: dict[str, int] = {}
        self._user_reads = Coalescer(self._fetch_users, parallel=USER_READS_PARALLEL,
                                     defer_to=reactor.callLater)
        self.reactor_reads = reactor_reads
        self._wire: WireReads | None = None
        self._wire_failing = False

    # -- lifecycle -------------------------------------------------------

    async def _open(self) -> "VStore":
        await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                        self._prepare)
        pool_kwargs = self.backend.pool_kwargs()
        if self.pool_max and not isinstance(self.backend, SqliteBackend):
            pool_kwargs.update(cp_min=min(pool_kwargs["cp_min"], self.pool_max),
                               cp_max=self.pool_max)
        self.pool = adbapi.ConnectionPool(self.backend.module, cp_reactor=self.reactor,
                                          **self.backend.connect_kwargs(), **pool_kwargs)
        self.pool.start()
        try:
            await self.pool.runInteraction(self._create_tables)
        except BaseException:
            self.pool.close()
            self.pool = None
            raise
        if self.reactor_reads and not isinstance(self.backend, SqliteBackend):
            self._wire = WireReads(self.backend, self.reactor, size=USER_READS_PARALLEL)
        return self

    def open(self) -> defer.Deferred:
        """Create the tables that are missing (IndiMail's own stay as they are)."""
        return defer.Deferred.fromCoroutine(self._open())

    def _prepare(self) -> None:
        """Blocking: the SQLite directory, or the MySQL database when asked to create it."""
        if isinstance(self.backend, SqliteBackend):
            conn = self.backend.connect()
            try:   # WAL: commands and services read while another process writes
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                conn.close()
        elif self.create_database:
            conn = self.backend.connect(with_database=False)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS "
                                f"{schema.check_name(self.backend.database)}")
            finally:
                conn.close()

    def _create_tables(self, txn) -> None:
        for table, layout in schema.LAYOUTS.items():
            for statement in self.backend.ddl(table, layout):
                txn.execute(statement)
        if not isinstance(self.backend, SqliteBackend):
            txn.execute("SELECT TABLE_NAME, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'pw_passwd' "
                        "AND TABLE_NAME IN ('indimail', 'indibak')")
            self._passwd_width = {t: int(w) for t, w in txn.fetchall() if w}

    def check_passwd_width(self, user: VUser) -> None:
        """StoreError when *user*'s pw_passwd is wider than the table's column
        (an IndiMail-made char(128) table and a SCRAM form): MySQL would
        truncate it and the password would never match again."""
        table = INACTIVE if user.inactive else ACTIVE
        width = self._passwd_width.get(table)
        if width and len(user.pw_passwd) > width:
            raise StoreError(
                f"password form of {len(user.pw_passwd)} characters does not fit "
                f"{table}.pw_passwd ({width}); widen it with: ALTER TABLE {table} MODIFY "
                f"pw_passwd varchar({schema.PASSWD_WIDTH}) not null")

    def close(self) -> defer.Deferred:
        """Stop the pool's threads and close its connections; the Deferred
        fires when the reactor-side connections are gone too."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        wire, self._wire = self._wire, None
        return wire.close() if wire is not None else defer.succeed(None)

    # -- plumbing --------------------------------------------------------

    def _query(self, sql: str, *args) -> defer.Deferred:
        return self.pool.runQuery(self.backend.sql(sql), args)

    def _operation(self, sql: str, *args) -> defer.Deferred:
        return self.pool.runOperation(self.backend.sql(sql), args)

    def _interaction(self, fn: Callable, *args) -> defer.Deferred:
        return self.pool.runInteraction(fn, *args)

    def _x(self, txn, sql: str, *args):
        txn.execute(self.backend.sql(sql), args)
        return txn

    def _count(self, sql: str, *args) -> defer.Deferred:
        def run(txn):
            return self._x(txn, sql, *args).rowcount
        return self._interaction(run)

    async def _first(self, sql: str, *args):
        rows = await self._query(sql, *args)
        return rows[0] if rows else None

    # -- domains ---------------------------------------------------------

    @deferred
    async def add_domain(self, domain: str) -> None:
        """Register *domain* (a dir_control row); DomainExists when known already."""
        domain = _lower(domain)

        def run(txn):
            for sql in ("SELECT domain FROM dir_control WHERE domain = %s",
                        "SELECT alias FROM aliasdomain WHERE alias = %s"):
                if self._x(txn, sql, domain).fetchall():
                    raise DomainExists(f"domain {domain} exists")
            cols = ", ".join(("domain",) + _DIR_CONTROL_COLUMNS)
            marks = ", ".join(["%s"] * (1 + len(_DIR_CONTROL_COLUMNS)))
            self._x(txn, f"INSERT INTO dir_control ({cols}) VALUES ({marks})",
                    domain, *_DIR_CONTROL_DEFAULTS)
        await self._interaction(run)

    @deferred
    async def delete_domain(self, domain: str) -> bool:
        """Remove *domain*, its users, aliases, limits, filters and alias domains."""
        domain = _lower(domain)

        def run(txn):
            found = self._x(txn, "DELETE FROM dir_control WHERE domain = %s", domain).rowcount
            for table in (ACTIVE, INACTIVE, "hostcntrl", "atrn_map"):
                found += self._x(txn, f"DELETE FROM {table} WHERE pw_domain = %s", domain).rowcount
            for table in ("valias", "vlimits", "lastauth", "userquota", "aliasdomain",
                          "ip_alias_map"):
                self._x(txn, f"DELETE FROM {table} WHERE domain = %s", domain)
            self._x(txn, "DELETE FROM vfilter WHERE emailid LIKE %s", "%@" + domain)
            return found > 0
        return await self._interaction(run)

    @deferred
    async def list_domains(self) -> list[str]:
        """The domains, sorted: dir_control rows and the domains users live in
        (a database IndiMail filled may have users without a dir_control row)."""
        names: set[str] = set()
        for sql in ("SELECT domain FROM dir_control",
                    f"SELECT DISTINCT pw_domain FROM {ACTIVE}",
                    f"SELECT DISTINCT pw_domain FROM {INACTIVE}"):
            names.update(r[0] for r in await self._query(sql))
        return sorted(names)

    @deferred
    async def has_domain(self, domain: str) -> bool:
        """Whether *domain* is a real (not alias) domain of the store."""
        domain = _lower(domain)
        for sql in ("SELECT domain FROM dir_control WHERE domain = %s",
                    f"SELECT pw_domain FROM {ACTIVE} WHERE pw_domain = %s LIMIT 1",
                    f"SELECT pw_domain FROM {INACTIVE} WHERE pw_domain = %s LIMIT 1"):
            if await self._first(sql, domain):
                return True
        return False

    @deferred
    async def dir_control(self, domain: str) -> dict[str, Any] | None:
        """The domain's dir_control row (user count and hashed-directory state)."""
        row = await self._first(f"SELECT {', '.join(_DIR_CONTROL_COLUMNS)} FROM dir_control "
                                "WHERE domain = %s", _lower(domain))
        return dict(zip(_DIR_CONTROL_COLUMNS, row)) if row else None

    @deferred
    async def set_dir_control(self, domain: str, **values) -> bool:
        """Update columns of the domain's dir_control row; False when there is none."""
        unknown = set(values) - set(_DIR_CONTROL_COLUMNS)
        if unknown:
            raise StoreError(f"not dir_control columns: {sorted(unknown)}")
        if not values:
            return await self.has_domain(domain)
        sets = ", ".join(f"{c} = %s" for c in values)
        return bool(await self._count(f"UPDATE dir_control SET {sets} WHERE domain = %s",
                                      *values.values(), _lower(domain)))

    @deferred
    async def add_alias_domain(self, alias: str, domain: str) -> None:
        """Make *alias* another name of the registered *domain*."""
        alias, domain = _lower(alias), _lower(domain)

        if not await self.has_domain(domain):
            raise StoreError(f"domain {domain} does not exist")

        def run(txn):
            for sql in ("SELECT domain FROM dir_control WHERE domain = %s",
                        "SELECT alias FROM aliasdomain WHERE alias = %s"):
                if self._x(txn, sql, alias).fetchall():
                    raise DomainExists(f"domain {alias} exists")
            self._x(txn, "INSERT INTO aliasdomain (alias, domain) VALUES (%s, %s)", alias, domain)
        await self._interaction(run)

    @deferred
    async def delete_alias_domain(self, alias: str) -> bool:
        return bool(await self._count("DELETE FROM aliasdomain WHERE alias = %s", _lower(alias)))

    @deferred
    async def list_alias_domains(self, domain: str | None = None) -> list[tuple[str, str]]:
        """(alias, real domain) pairs, all or those of *domain*."""
        if domain is None:
            rows = await self._query("SELECT alias, domain FROM aliasdomain ORDER BY alias")
        else:
            rows = await self._query("SELECT alias, domain FROM aliasdomain WHERE domain = %s "
                                     "ORDER BY alias", _lower(domain))
        return [(a, d) for a, d in rows]

    @deferred
    async def real_domain(self, name: str) -> str | None:
        """The domain *name* stands for: itself, the target of an alias, or None."""
        name = _lower(name)
        row = await self._first("SELECT domain FROM aliasdomain WHERE alias = %s", name)
        if row:
            return row[0]
        return name if await self.has_domain(name) else None

    # -- users -----------------------------------------------------------

    @deferred
    async def add_user(self, user: VUser) -> None:
        """Insert *user* into indimail (or indibak when inactive); UserExists if present."""
        user = user.with_(pw_name=_lower(user.pw_name), pw_domain=_lower(user.pw_domain))
        self.check_passwd_width(user)
        table = INACTIVE if user.inactive else ACTIVE
        values = [getattr(user, c) for c in USER_COLUMNS]

        def run(txn):
            for t in (ACTIVE, INACTIVE):
                if self._x(txn, f"SELECT pw_name FROM {t} WHERE pw_name = %s AND pw_domain = %s",
                           user.pw_name, user.pw_domain).fetchall():
                    raise UserExists(f"user {user.address} exists")
            marks = ", ".join(["%s"] * len(USER_COLUMNS))
            self._x(txn, f"INSERT INTO {table} ({', '.join(USER_COLUMNS)}) VALUES ({marks})",
                    *values)
        try:
            await self._interaction(run)
        except self.backend.integrity_error() as exc:
            raise UserExists(f"user {user.address} exists") from exc

    @deferred
    async def get_user(self, name: str, domain: str) -> VUser | None:
        """The user, active first; None when in neither table.  Lookups that
        arrive together share one query (see :mod:`.coalesce`)."""
        return await self._user_reads.get((_lower(name), _lower(domain)))

    def _read_user(self, name: str, domain: str) -> defer.Deferred:
        """:meth:`get_user` without its coroutine wrapper (for :meth:`find`);
        a store that routes users elsewhere overrides this."""
        return self._user_reads.get((_lower(name), _lower(domain)))

    def _fetch_users(self, keys: list[tuple[str, str]]) -> defer.Deferred:
        """``{(name, domain): VUser}`` of *keys*: on the reactor when it can
        (:mod:`.mysqlwire`), else in one pool trip."""
        if self._wire is not None and self._wire.usable:
            return defer.Deferred.fromCoroutine(self._fetch_users_wire(keys))
        return self._interaction(self._users_in_txn, keys)

    def _users_in_txn(self, txn, keys: list[tuple[str, str]]) -> dict:
        return _collect_users(keys, lambda sql, args: self._x(txn, sql, *args).fetchall())

    async def _fetch_users_wire(self, keys: list[tuple[str, str]]) -> dict:
        """The same reads over the reactor-side connections; any failure
        there sends this batch through the pool instead (its errors are the
        ones callers know)."""
        found: dict = {}
        try:
            for table, inactive in _USER_TABLES:
                wanted = [k for k in keys if k not in found]
                if not wanted:
                    break
                sql, args = _users_select(table, wanted)
                _add_users(found, await self._wire.query(sql, args), inactive)
        except WireError as exc:
            if not self._wire_failing:
                log.warn("user lookups fall back to the thread pool: {why}", why=exc)
            self._wire_failing = True
            return await self._interaction(self._users_in_txn, keys)
        if self._wire_failing:
            log.info("user lookups are back on the reactor-side connections")
            self._wire_failing = False
        return found

    async def find(self, address: str) -> VUser | None:
        """The user of ``name@domain``, the domain possibly an alias domain.
        A coroutine for callers that are coroutines themselves: each
        Deferred between them and the query is work on every RCPT check."""
        name, at, domain = address.rpartition("@")
        if not at or not name:
            return None
        user = await self._read_user(name, domain)
        if user is not None:
            return user
        return await self.find_in_alias_domain(name, domain)

    async def find_in_alias_domain(self, name: str, domain: str) -> VUser | None:
        """The user *name* of the real domain when *domain* is an alias
        domain; None otherwise (what :meth:`find` asks after a miss)."""
        row = await self._first("SELECT domain FROM aliasdomain WHERE alias = %s", _lower(domain))
        return await self._read_user(name, row[0]) if row else None

    lookup = deferred(find)
    lookup.__doc__ = """:meth:`find` as a Deferred."""

    @deferred
    async def update_user(self, user: VUser) -> bool:
        """Write *user*'s fields to the row of its table (``inactive`` picks it)."""
        self.check_passwd_width(user)
        table = INACTIVE if user.inactive else ACTIVE
        cols = USER_COLUMNS[2:]
        sets = ", ".join(f"{c} = %s" for c in cols)
        return bool(await self._count(
            f"UPDATE {table} SET {sets} WHERE pw_name = %s AND pw_domain = %s",
            *[getattr(user, c) for c in cols], _lower(user.pw_name), _lower(user.pw_domain)))

    @deferred
    async def delete_user(self, name: str, domain: str) -> bool:
        """Remove the user from both tables and its per-user rows."""
        name, domain = _lower(name), _lower(domain)

        def run(txn):
            found = 0
            for table in (ACTIVE, INACTIVE, "hostcntrl"):
                found += self._x(txn, f"DELETE FROM {table} WHERE pw_name = %s AND pw_domain = %s",
                                 name, domain).rowcount
            for table in ("lastauth", "userquota"):
                self._x(txn, f"DELETE FROM {table} WHERE user = %s AND domain = %s", name, domain)
            self._x(txn, "DELETE FROM vfilter WHERE emailid = %s", f"{name}@{domain}")
            return found > 0
        return await self._interaction(run)

    @deferred
    async def rename_user(self, old: VUser, new: VUser) -> None:
        """Move *old*'s row to *new*'s name, domain and directory, with its
        per-user rows (valias, vfilter, hostcntrl, lastauth, userquota)."""
        new = new.with_(pw_name=_lower(new.pw_name), pw_domain=_lower(new.pw_domain))
        self.check_passwd_width(new)
        on, od, nn, nd = _lower(old.pw_name), _lower(old.pw_domain), new.pw_name, new.pw_domain
        table = INACTIVE if old.inactive else ACTIVE

        def run(txn):
            for t in (ACTIVE, INACTIVE):
                if self._x(txn, f"SELECT pw_name FROM {t} WHERE pw_name = %s AND pw_domain = %s",
                           nn, nd).fetchall():
                    raise UserExists(f"user {new.address} exists")
            self._x(txn, f"UPDATE {table} SET pw_name = %s, pw_domain = %s, pw_dir = %s "
                         "WHERE pw_name = %s AND pw_domain = %s", nn, nd, new.pw_dir, on, od)
            self._x(txn, "UPDATE hostcntrl SET pw_name = %s, pw_domain = %s "
                         "WHERE pw_name = %s AND pw_domain = %s", nn, nd, on, od)
            for t in ("lastauth", "userquota"):
                self._x(txn, f"UPDATE {t} SET user = %s, domain = %s WHERE user = %s "
                             "AND domain = %s", nn, nd, on, od)
            self._x(txn, "UPDATE valias SET alias = %s, domain = %s WHERE alias = %s "
                         "AND domain = %s", nn, nd, on, od)
            self._x(txn, "UPDATE vfilter SET emailid = %s WHERE emailid = %s",
                    f"{nn}@{nd}", f"{on}@{od}")
        await self._interaction(run)

    @deferred
    async def set_inactive(self, name: str, domain: str, inactive: bool) -> bool:
        """Move the user to indibak (inactive) or back to indimail; False if not there."""
        name, domain = _lower(name), _lower(domain)
        source, target = (ACTIVE, INACTIVE) if inactive else (INACTIVE, ACTIVE)
        cols = ", ".join(USER_COLUMNS)

        def run(txn):
            moved = self._x(txn, f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} "
                                 "WHERE pw_name = %s AND pw_domain = %s", name, domain).rowcount
            if moved:
                self._x(txn, f"DELETE FROM {source} WHERE pw_name = %s AND pw_domain = %s",
                        name, domain)
            return bool(moved)
        return await self._interaction(run)

    @deferred
    async def list_users(self, domain: str) -> list[VUser]:
        """The users of *domain*, active then inactive, each sorted by name."""
        users = []
        for table, inactive in ((ACTIVE, False), (INACTIVE, True)):
            rows = await self._query(f"SELECT {', '.join(USER_COLUMNS)} FROM {table} "
                                     "WHERE pw_domain = %s ORDER BY pw_name", _lower(domain))
            users.extend(_user(r, inactive) for r in rows)
        return users

    @deferred
    async def count_users(self, domain: str) -> int:
        """Active plus inactive users of *domain* (for vlimits' maxpopaccounts)."""
        total = 0
        for table in (ACTIVE, INACTIVE):
            row = await self._first(f"SELECT COUNT(*) FROM {table} WHERE pw_domain = %s",
                                    _lower(domain))
            total += int(row[0])
        return total

    # -- cluster: hostcntrl, host_table, smtp_port ------------------------

    @deferred
    async def set_mailstore(self, name: str, domain: str, host: str, passwd: str = "",
                            now: float | None = None) -> None:
        """Record that the user's mailbox lives on *host* (hostcntrl)."""
        await self._operation("REPLACE INTO hostcntrl (pw_name, pw_domain, pw_passwd, host, "
                              "timestamp) VALUES (%s, %s, %s, %s, %s)", _lower(name),
                              _lower(domain), passwd, host,
                              _sqltime(time.time() if now is None else now))

    @deferred
    async def mailstore(self, name: str, domain: str) -> str | None:
        row = await self._first("SELECT host FROM hostcntrl WHERE pw_name = %s AND pw_domain = %s",
                                _lower(name), _lower(domain))
        return row[0] if row else None

    @deferred
    async def mailstores(self) -> list[tuple[str, str, str, float | None]]:
        """Every hostcntrl row: (user, domain, host, time added), by domain and user."""
        rows = await self._query("SELECT pw_name, pw_domain, host, timestamp FROM hostcntrl "
                                 "ORDER BY pw_domain, pw_name")
        return [(n, d, h, _epoch(t)) for n, d, h, t in rows]

    @deferred
    async def mailstore_row(self, name: str, domain: str) -> tuple[str, float | None] | None:
        """(host, time added) of the user's hostcntrl row, or None."""
        row = await self._first("SELECT host, timestamp FROM hostcntrl WHERE pw_name = %s "
                                "AND pw_domain = %s", _lower(name), _lower(domain))
        return (row[0], _epoch(row[1])) if row else None

    @deferred
    async def delete_mailstore(self, name: str, domain: str) -> bool:
        return bool(await self._count("DELETE FROM hostcntrl WHERE pw_name = %s AND pw_domain = %s",
                                      _lower(name), _lower(domain)))

    @deferred
    async def set_host_ip(self, host: str, ipaddr: str) -> None:
        await self._operation("REPLACE INTO host_table (host, ipaddr) VALUES (%s, %s)", host, ipaddr)

    @deferred
    async def host_ip(self, host: str) -> str | None:
        """The IP address of mail store *host* (host_table)."""
        row = await self._first("SELECT ipaddr FROM host_table WHERE host = %s", host)
        return row[0] if row else None

    @deferred
    async def set_smtp_port(self, host: str, src_host: str, domain: str, port: int) -> None:
        await self._operation("REPLACE INTO smtp_port (host, src_host, domain, port) "
                              "VALUES (%s, %s, %s, %s)", host, src_host, _lower(domain), port)

    @deferred
    async def smtp_port(self, host: str, src_host: str, domain: str,
                        default: int = PORT_SMTP) -> int:
        """The port *src_host* uses to reach mail store *host* for *domain*.

        As upstream ``get_smtp_service_port``: the row of *src_host*, else a
        row whose src_host is ``*``, else *default*; a port of 0 is *default*."""
        rows = await self._query("SELECT port, src_host FROM smtp_port WHERE host = %s "
                                 "AND domain = %s", host, _lower(domain))
        port = None
        for row_port, row_src in rows:
            if row_src == src_host:
                port = row_port
                break
            if row_src.startswith("*"):
                port = row_port
        return int(port) if port else default

    @deferred
    async def ip_domain(self, ipaddr: str) -> str | None:
        """The domain mapped to a local IP address (ip_alias_map)."""
        row = await self._first("SELECT domain FROM ip_alias_map WHERE ipaddr = %s", ipaddr)
        return row[0] if row else None

    # -- relay (POP-before-SMTP) -----------------------------------------

    @deferred
    async def add_relay(self, email: str, ipaddr: str, now: float) -> None:
        """Open relaying for *ipaddr* after *email* logged in at *now*."""
        await self._operation("REPLACE INTO relay (email, ipaddr, timestamp) VALUES (%s, %s, %s)",
                              email, ipaddr, int(now))

    @deferred
    async def relay_allowed(self, ipaddr: str, now: float,
                            minutes: int = RELAY_CLEAR_MINUTES) -> bool:
        """Whether *ipaddr* has a relay row newer than *minutes* before *now*."""
        row = await self._first("SELECT COUNT(*) FROM relay WHERE ipaddr = %s AND timestamp >= %s",
                                ipaddr, int(now) - minutes * 60)
        return int(row[0]) > 0

    @deferred
    async def clear_relay(self, now: float, minutes: int = RELAY_CLEAR_MINUTES) -> int:
        """Delete relay rows older than *minutes* (clearopensmtp); how many went."""
        return await self._count("DELETE FROM relay WHERE timestamp < %s",
                                 int(now) - minutes * 60)

    # -- valias ------------------------------------------------------------

    @deferred
    async def add_alias_line(self, alias: str, domain: str, line: str) -> bool:
        """Add one delivery line to *alias*; False when it was there already."""
        try:
            await self._operation("INSERT INTO valias (alias, domain, valias_line) "
                                  "VALUES (%s, %s, %s)", _lower(alias), _lower(domain), line)
        except self.backend.integrity_error():
            return False
        return True

    @deferred
    async def alias_lines(self, alias: str, domain: str) -> list[str]:
        rows = await self._query("SELECT valias_line FROM valias WHERE alias = %s AND domain = %s "
                                 "ORDER BY valias_line", _lower(alias), _lower(domain))
        return [r[0] for r in rows]

    @deferred
    async def delete_alias(self, alias: str, domain: str, line: str | None = None) -> int:
        """Delete one line of *alias*, or all of them; how many went."""
        if line is None:
            return await self._count("DELETE FROM valias WHERE alias = %s AND domain = %s",
                                     _lower(alias), _lower(domain))
        return await self._count("DELETE FROM valias WHERE alias = %s AND domain = %s "
                                 "AND valias_line = %s", _lower(alias), _lower(domain), line)

    @deferred
    async def list_aliases(self, domain: str) -> list[tuple[str, str]]:
        """(alias, line) pairs of *domain*."""
        rows = await self._query("SELECT alias, valias_line FROM valias WHERE domain = %s "
                                 "ORDER BY alias, valias_line", _lower(domain))
        return [(a, line) for a, line in rows]

    @deferred
    async def update_alias_line(self, alias: str, domain: str, old: str, new: str) -> int:
        """Replace line *old* of *alias* by *new* (valias -u); how many changed."""
        return await self._count("UPDATE valias SET valias_line = %s WHERE alias = %s AND "
                                 "domain = %s AND valias_line = %s", new, _lower(alias),
                                 _lower(domain), old)

    @deferred
    async def aliases_to(self, target: str) -> list[tuple[str, str]]:
        """(alias, domain) of the aliases with a line naming *target* (valias -t)."""
        rows = await self._query("SELECT alias, domain FROM valias WHERE valias_line = %s OR "
                                 "valias_line = %s ORDER BY domain, alias", target, "&" + target)
        return [(a, d) for a, d in rows]

    # -- vlimits -----------------------------------------------------------

    @deferred
    async def get_limits(self, domain: str) -> VLimits:
        """The domain's limits; IndiMail's defaults (-1 = unlimited) without a row."""
        domain = _lower(domain)
        row = await self._first(f"SELECT {', '.join(LIMIT_COLUMNS)} FROM vlimits "
                                "WHERE domain = %s", domain)
        if not row:
            return VLimits(domain)
        return VLimits(row[0], *(int(v) for v in row[1:]))

    @deferred
    async def has_limits(self, domain: str) -> bool:
        return bool(await self._first("SELECT domain FROM vlimits WHERE domain = %s",
                                      _lower(domain)))

    @deferred
    async def set_limits(self, limits: VLimits) -> None:
        values = [getattr(limits, c) for c in LIMIT_COLUMNS]
        values[0] = _lower(values[0])
        marks = ", ".join(["%s"] * len(LIMIT_COLUMNS))
        await self._operation(f"REPLACE INTO vlimits ({', '.join(LIMIT_COLUMNS)}) "
                              f"VALUES ({marks})", *values)

    @deferred
    async def delete_limits(self, domain: str) -> bool:
        return bool(await self._count("DELETE FROM vlimits WHERE domain = %s", _lower(domain)))

    # -- lastauth, userquota ---------------------------------------------

    @deferred
    async def record_auth(self, user: str, domain: str, service: str, remote_ip: str,
                          now: float, quota: int = 0, gecos: str = "") -> None:
        """Remember that *user* used *service* from *remote_ip* at *now*."""
        await self._operation("REPLACE INTO lastauth (user, domain, service, remote_ip, quota, "
                              "gecos, timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                              _lower(user), _lower(domain), service, remote_ip, quota, gecos,
                              _sqltime(now))

    @deferred
    async def last_auth(self, user: str, domain: str, service: str | None = None):
        """(time, service, remote_ip) of the latest record, of *service* if given; or None."""
        sql = ("SELECT timestamp, service, remote_ip FROM lastauth WHERE user = %s "
               "AND domain = %s")
        args = [_lower(user), _lower(domain)]
        if service is not None:
            sql += " AND service = %s"
            args.append(service)
        row = await self._first(sql + " ORDER BY timestamp DESC", *args)
        return (_epoch(row[0]), row[1], row[2]) if row else None

    @deferred
    async def set_usage(self, user: str, domain: str, size: int, now: float) -> None:
        """Record the mailbox size of *user* (userquota)."""
        await self._operation("REPLACE INTO userquota (user, domain, quota, timestamp) "
                              "VALUES (%s, %s, %s, %s)", _lower(user), _lower(domain), size,
                              _sqltime(now))

    @deferred
    async def usage(self, user: str, domain: str) -> int | None:
        row = await self._first("SELECT quota FROM userquota WHERE user = %s AND domain = %s",
                                _lower(user), _lower(domain))
        return int(row[0]) if row else None

    # -- vfilter -----------------------------------------------------------

    @deferred
    async def add_filter(self, rule: VFilter) -> None:
        rule = VFilter(_lower(rule.emailid), *[getattr(rule, c) for c in FILTER_COLUMNS[1:]])
        marks = ", ".join(["%s"] * len(FILTER_COLUMNS))
        try:
            await self._operation(f"INSERT INTO vfilter ({', '.join(FILTER_COLUMNS)}) "
                                  f"VALUES ({marks})", *[getattr(rule, c) for c in FILTER_COLUMNS])
        except self.backend.integrity_error() as exc:
            raise StoreError(f"filter {rule.filter_no} of {rule.emailid} exists") from exc

    @deferred
    async def filters(self, emailid: str) -> list[VFilter]:
        """The rules of *emailid* in filter_no order."""
        rows = await self._query(f"SELECT {', '.join(FILTER_COLUMNS)} FROM vfilter "
                                 "WHERE emailid = %s ORDER BY filter_no", _lower(emailid))
        return [VFilter(r[0], int(r[1]), r[2], int(r[3]), int(r[4]), r[5], r[6], r[7], int(r[8]))
                for r in rows]

    @deferred
    async def next_filter_no(self, emailid: str) -> int:
        """The lowest free filter number from 2 up (0 and 1 belong to
        comparisons 5 and 6), as upstream ``vfilter_filterNo``."""
        rows = await self._query("SELECT filter_no FROM vfilter WHERE emailid = %s AND "
                                 "filter_no > 1 ORDER BY filter_no", _lower(emailid))
        number = 2
        for (taken,) in rows:
            if int(taken) != number:
                break
            number += 1
        return number

    @deferred
    async def update_filter(self, rule: VFilter) -> int:
        """Rewrite rule *rule.filter_no* of *rule.emailid*; how many rows changed."""
        cols = FILTER_COLUMNS[2:]
        sets = ", ".join(f"{c} = %s" for c in cols)
        return await self._count(f"UPDATE vfilter SET {sets} WHERE emailid = %s AND "
                                 "filter_no = %s", *[getattr(rule, c) for c in cols],
                                 _lower(rule.emailid), rule.filter_no)

    @deferred
    async def delete_filter(self, emailid: str, filter_no: int | None = None) -> int:
        if filter_no is None:
            return await self._count("DELETE FROM vfilter WHERE emailid = %s", _lower(emailid))
        return await self._count("DELETE FROM vfilter WHERE emailid = %s AND filter_no = %s",
                                 _lower(emailid), filter_no)

    # -- dbinfo, atrn_map, vpriv, mgmtaccess -------------------------------

    @deferred
    async def set_dbinfo(self, filename: str, entries: list[McdEntry], now: float) -> None:
        """Replace the dbinfo rows of mcdinfo file *filename* by *entries* (dbinfo's sync)."""
        def run(txn):
            self._x(txn, "DELETE FROM dbinfo WHERE filename = %s", filename)
            for e in entries:
                self._x(txn, "INSERT INTO dbinfo (filename, domain, distributed, server, mdahost, "
                             "port, use_ssl, dbname, user, passwd, timestamp) VALUES "
                             "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        filename, e.domain, e.distributed, e.server, e.mdahost, e.port,
                        int(e.use_ssl), e.database, e.user, e.password, _sqltime(now))
        await self._interaction(run)

    @deferred
    async def dbinfo(self, filename: str | None = None) -> list[McdEntry]:
        """The cluster's databases from the dbinfo table (of one mcdinfo file if given)."""
        sql = ("SELECT domain, distributed, server, mdahost, port, use_ssl, dbname, user, passwd "
               "FROM dbinfo")
        args = ()
        if filename is not None:
            sql += " WHERE filename = %s"
            args = (filename,)
        rows = await self._query(sql + " ORDER BY domain, server", *args)
        return [McdEntry(d, int(dist), srv, mda, int(port), bool(ssl), db, user, pw)
                for d, dist, srv, mda, port, ssl, db, user, pw in rows]

    @deferred
    async def add_atrn(self, name: str, domain: str, atrn_domain: str) -> None:
        """Let *name@domain* pull mail for *atrn_domain* with ATRN (atrn_map)."""
        await self._operation("REPLACE INTO atrn_map (pw_name, pw_domain, domain_list) "
                              "VALUES (%s, %s, %s)", _lower(name), _lower(domain),
                              _lower(atrn_domain))

    @deferred
    async def atrn_domains(self, name: str, domain: str) -> list[str]:
        rows = await self._query("SELECT domain_list FROM atrn_map WHERE pw_name = %s AND "
                                 "pw_domain = %s ORDER BY domain_list", _lower(name), _lower(domain))
        return [r[0] for r in rows]

    @deferred
    async def delete_atrn(self, name: str, domain: str, atrn_domain: str | None = None) -> int:
        if atrn_domain is None:
            return await self._count("DELETE FROM atrn_map WHERE pw_name = %s AND pw_domain = %s",
                                     _lower(name), _lower(domain))
        return await self._count("DELETE FROM atrn_map WHERE pw_name = %s AND pw_domain = %s "
                                 "AND domain_list = %s", _lower(name), _lower(domain),
                                 _lower(atrn_domain))

    @deferred
    async def set_privilege(self, user: str, program: str, cmdswitches: str) -> None:
        """Allow admin *user* to run *program* with *cmdswitches* (vpriv)."""
        await self._operation("REPLACE INTO vpriv (user, program, cmdswitches) VALUES (%s, %s, %s)",
                              user, program, cmdswitches)

    @deferred
    async def privileges(self, user: str) -> dict[str, str]:
        """program -> allowed switches for admin *user*."""
        rows = await self._query("SELECT program, cmdswitches FROM vpriv WHERE user = %s", user)
        return {program: switches or "" for program, switches in rows}

    @deferred
    async def delete_privilege(self, user: str, program: str | None = None) -> int:
        if program is None:
            return await self._count("DELETE FROM vpriv WHERE user = %s", user)
        return await self._count("DELETE FROM vpriv WHERE user = %s AND program = %s",
                                 user, program)

    @deferred
    async def set_admin(self, user: str, password_hash: str, now: float) -> None:
        """Create or re-key an indisrvr administrator (mgmtaccess), status active."""
        await self._operation("REPLACE INTO mgmtaccess (user, pass, pw_uid, pw_gid, lastaccess, "
                              "lastupdate, day, attempts, status) VALUES "
                              "(%s, %s, 0, 0, %s, %s, '', 0, '0')", user, password_hash,
                              int(now), int(now))

    @deferred
    async def admin_password(self, user: str) -> str | None:
        """The stored password hash of administrator *user*, or None."""
        row = await self._first("SELECT pass FROM mgmtaccess WHERE user = %s", user)
        return row[0] if row else None

    # -- control-file tables (badmailfrom, badrcptto, spamdb, ...) ---------

    def _ensure_control(self, txn, table: str) -> None:
        if table not in self._control_tables:
            for statement in self.backend.ddl(table, schema.CONTROL_LAYOUT):
                self._x(txn, statement)
            self._control_tables.add(table)

    @deferred
    async def add_control_entry(self, table: str, email: str, now: float) -> None:
        """List *email* in control table *table* (created on first use)."""
        schema.check_name(table)

        def run(txn):
            self._ensure_control(txn, table)
            self._x(txn, f"REPLACE INTO {table} (email, timestamp) VALUES (%s, %s)",
                    email.lower(), _sqltime(now))
        await self._interaction(run)

    @deferred
    async def delete_control_entry(self, table: str, email: str) -> bool:
        schema.check_name(table)

        def run(txn):
            self._ensure_control(txn, table)
            return self._x(txn, f"DELETE FROM {table} WHERE email = %s", email.lower()).rowcount
        return bool(await self._interaction(run))

    @deferred
    async def control_entries(self, table: str) -> list[str]:
        schema.check_name(table)

        def run(txn):
            self._ensure_control(txn, table)
            return [r[0] for r in self._x(txn, f"SELECT email FROM {table} ORDER BY email")
                    .fetchall()]
        return await self._interaction(run)

    @deferred
    async def contains(self, table: str, key: str) -> bool:
        """Whether *key* is listed in control table *table* (a missing table lists nothing)."""
        schema.check_name(table)
        try:
            row = await self._first(f"SELECT email FROM {table} WHERE email = %s", key.lower())
        except Exception as exc:
            if self.backend.missing_table(exc):
                return False
            raise
        return row is not None



def open_store(home, env=None, *, reactor=None) -> defer.Deferred:
    """The store of *home* (``MYSQL_HOST``/``host.mysql``, else SQLite), opened,
    routing users of mcdinfo domains to their databases."""
    from .distributed import routed_store
    return routed_store(home, env, reactor=reactor).open()
