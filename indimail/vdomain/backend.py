"""Where the store lives: SQLite in the home, or MySQL/MariaDB from ``host.mysql``.

A backend knows its DB-API module, how to connect, how to spell a parameter
and its DDL; the store builds an ``adbapi.ConnectionPool`` from it and the
control-file sql slot opens plain blocking connections from it.

``control/host.mysql`` (or ``MYSQL_HOST``) is IndiMail's
``host:user:password:port-or-/socket[:ssl|nossl]``; missing fields take
IndiMail's defaults (user indimail, password ssh-1.5-, port 3306).  The
database is ``indimail`` unless ``MYSQL_DATABASE`` names another.  Without
either the store is SQLite in ``<home>/domains/indimail.db``.  ``control/mcdinfo``
lists the databases of a cluster, one record per domain.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from indimail.config.control import ControlFileError
from . import schema

MYSQL_USER = "indimail"
MYSQL_PASSWD = "ssh-1.5-"
MYSQL_DATABASE = "indimail"
MYSQL_PORT = 3306
SQLITE_NAME = "indimail.db"


@dataclass(frozen=True)
class SqliteBackend:
    """The embedded default: one database file."""

    path: str
    name = "sqlite"
    module = "sqlite3"

    def connect_kwargs(self) -> dict:
        return {"database": self.path, "check_same_thread": False, "timeout": 30}

    def pool_kwargs(self) -> dict:
        # one connection: SQLite has a single writer, and one thread keeps it simple
        return {"cp_min": 1, "cp_max": 1}

    def connect(self):
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(**self.connect_kwargs())

    def ddl(self, table: str, layout: str) -> list[str]:
        return schema.sqlite_ddl(table, layout)

    def sql(self, text: str) -> str:
        return text.replace("%s", "?")

    def integrity_error(self) -> type[Exception]:
        return sqlite3.IntegrityError

    def missing_table(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


@dataclass(frozen=True)
class MysqlBackend:
    """MySQL or MariaDB through PyMySQL."""

    host: str = "localhost"
    user: str = MYSQL_USER
    password: str = MYSQL_PASSWD
    port: int = MYSQL_PORT
    socket: str | None = None
    ssl: bool = False
    database: str = MYSQL_DATABASE
    name = "mysql"
    module = "pymysql"

    def connect_kwargs(self, with_database: bool = True) -> dict:
        kwargs: dict = {"user": self.user, "password": self.password, "charset": "utf8mb4"}
        if self.socket:
            kwargs["unix_socket"] = self.socket
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.port
        if self.ssl:   # required; the certificate is not verified (no CA is configured)
            kwargs["ssl"] = {"check_hostname": False, "verify_mode": False}
        else:          # nossl means plain text, not PyMySQL's "TLS if offered"
            kwargs["ssl_disabled"] = True
        if with_database:
            kwargs["database"] = self.database
        return kwargs

    def pool_kwargs(self) -> dict:
        return {"cp_min": 1, "cp_max": 5, "cp_reconnect": True}

    def connect(self, with_database: bool = True):
        import pymysql
        return pymysql.connect(**self.connect_kwargs(with_database))

    def ddl(self, table: str, layout: str) -> list[str]:
        return schema.mysql_ddl(table, layout)

    def sql(self, text: str) -> str:
        return text

    def integrity_error(self) -> type[Exception]:
        import pymysql
        return pymysql.err.IntegrityError

    def missing_table(self, exc: Exception) -> bool:
        import pymysql
        return isinstance(exc, pymysql.err.ProgrammingError) and exc.args and exc.args[0] == 1146


Backend = SqliteBackend | MysqlBackend


def parse_host_mysql(line: str, env: Mapping[str, str] | None = None,
                     path: str = "host.mysql") -> MysqlBackend:
    """The backend named by a ``host.mysql`` line (upstream ``localDbInfo``).

    Empty fields fall back to ``MYSQL_USER``, ``MYSQL_PASSWD``, ``MYSQL_SOCKET``
    and ``MYSQL_VPORT`` from *env*, then IndiMail's defaults; a fourth field
    starting with ``/`` or ``.`` is a socket; the fifth is ``ssl`` or ``nossl``."""
    env = env or {}
    fields = line.strip().split(":")
    if not fields[0]:
        raise ControlFileError(path, 1, "no MySQL host")

    def field(n: int) -> str:
        return fields[n] if len(fields) > n else ""

    user = field(1) or env.get("MYSQL_USER", MYSQL_USER)
    password = field(2) or env.get("MYSQL_PASSWD", MYSQL_PASSWD)   # may be set empty
    socket = field(3) if field(3)[:1] in ("/", ".") else None
    port_text = "" if socket else field(3)
    if not socket and not port_text:
        socket = env.get("MYSQL_SOCKET") or None
        port_text = env.get("MYSQL_VPORT", "")
    try:
        port = int(port_text) if port_text else 0
    except ValueError:
        raise ControlFileError(path, 1, f"bad port {port_text!r}") from None
    database = env.get("MYSQL_DATABASE") or MYSQL_DATABASE
    return MysqlBackend(fields[0], user, password, port or MYSQL_PORT, socket,
                        field(4) == "ssl", database)


def backend_for_home(home, env: Mapping[str, str] | None = None) -> Backend:
    """``MYSQL_HOST`` (environment), else ``host.mysql`` in the control
    directory, else SQLite in ``<home>/domains/indimail.db``."""
    env = env or {}
    if env.get("MYSQL_HOST"):
        return parse_host_mysql(env["MYSQL_HOST"], env, "MYSQL_HOST")
    path = Path(home.control) / "host.mysql"
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            return parse_host_mysql(lines[0], env, str(path))
    return SqliteBackend(str(Path(home.domains) / SQLITE_NAME))


@dataclass(frozen=True)
class McdEntry:
    """One record of ``control/mcdinfo``: the database holding a domain's users."""

    domain: str
    distributed: int
    server: str
    mdahost: str
    port: int
    use_ssl: bool
    database: str
    user: str
    password: str

    def backend(self) -> MysqlBackend:
        socket = self.server if self.server[:1] in ("/", ".") else None
        return MysqlBackend(self.server, self.user, self.password, self.port or MYSQL_PORT,
                            socket, self.use_ssl, self.database)

    @property
    def key(self) -> tuple:
        """What tells two databases apart: server (or socket), port and database."""
        return database_key(self.backend())


def database_key(backend) -> tuple:
    """(server or socket, port, database) of a MySQL backend; the SQLite file's path."""
    if isinstance(backend, SqliteBackend):
        return ("sqlite", backend.path)
    if backend.socket:
        return (backend.socket, 0, backend.database)
    return (backend.host, backend.port, backend.database)


MCDFILE = "mcdinfo"


def mcdinfo_path(home, env: Mapping[str, str] | None = None) -> Path:
    """The mcdinfo file: ``MCDFILE`` when it is a path (starts with ``/`` or
    ``.``), else that name (default ``mcdinfo``) in the control directory."""
    env = env or {}
    name = env.get("MCDFILE") or MCDFILE
    if name[:1] in ("/", "."):
        return Path(name)
    return Path(home.control) / name


def load_mcdinfo(home, env: Mapping[str, str] | None = None) -> list["McdEntry"]:
    """Blocking: the records of the home's mcdinfo file; none when it is absent."""
    path = mcdinfo_path(home, env)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return parse_mcdinfo(text, str(path))


_MCD_ITEMS = ("mdahost", "port", "use_ssl", "database", "user", "pass")


def parse_mcdinfo(text: str, path: str = "mcdinfo") -> list[McdEntry]:
    """The records of an mcdinfo file, read as upstream ``loadMCDInfo`` does.

    ``domain <name> [<distributed>]`` names the domain of the next record; a
    record is ``server`` followed by mdahost, port, use_ssl, database, user and
    pass lines (``key value``); ``#`` starts a comment; count, table and time
    lines are ignored.  A record without a domain line belongs to
    ``unknown domain`` (distributed -1), as upstream."""
    entries: list[McdEntry] = []
    domain, distributed = "", 0
    record: dict[str, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if not value:
            raise ControlFileError(path, lineno, f"line has no value [{raw}]")
        if key.startswith("domain"):
            name, _, dist = value.partition(" ")
            domain = name
            try:
                distributed = int(dist.strip() or "0")
            except ValueError:
                raise ControlFileError(path, lineno, f"bad distributed flag {dist!r}") from None
            continue
        if key.startswith(("count", "table", "time")):
            continue
        if key.startswith("server"):
            if record is not None:
                raise ControlFileError(path, lineno, "line preceding is incomplete")
            record = {"server": value}
            continue
        item = next((k for k in _MCD_ITEMS if key.startswith(k)), None)
        if record is None or item is None:
            raise ControlFileError(path, lineno, f"invalid syntax [{raw}]")
        record[item] = value
        if len(record) == 7:
            try:
                port, use_ssl = int(record["port"]), int(record["use_ssl"]) != 0
            except ValueError:
                raise ControlFileError(path, lineno, "port and use_ssl must be numbers") from None
            entries.append(McdEntry(domain or "unknown domain", distributed if domain else -1,
                                    record["server"], record["mdahost"], port, use_ssl,
                                    record["database"], record["user"], record["pass"]))
            record, domain, distributed = None, "", 0
    if record is not None:
        raise ControlFileError(path, None, "incomplete record at end of file")
    return entries


def format_mcdinfo(entries: list[McdEntry]) -> str:
    """mcdinfo text for *entries*, laid out as upstream ``writemcdinfo``."""
    out = []
    for e in entries:
        out.append(f"domain   {e.domain} {1 if e.distributed > 0 else 0}\n"
                   f"server   {e.server}\nmdahost  {e.mdahost}\nport     {e.port}\n"
                   f"use_ssl  {1 if e.use_ssl else 0}\ndatabase {e.database}\n"
                   f"user     {e.user}\npass     {e.password}\n\n")
    return "".join(out)


def mcd_entries_for(entries: list[McdEntry], domain: str) -> list[McdEntry]:
    """The records of *domain* (a distributed domain has one per mail store)."""
    domain = domain.lower()
    return [e for e in entries if e.domain.lower() == domain]
