"""The "sql slot" of control files: ``ControlFiles(dir, sql_lookup=...)``.

``ControlFiles.contains(name, key)`` consults the sql slot when ``name.sql``
exists in the control directory, asking whether *key* is a row of table
*name* (``email char(64)`` primary key, as IndiMail's badmailfrom table).
That call is synchronous, so this adapter opens its own blocking connection,
one per thread, from the same backend as the store.  It blocks: use it where
control files are read off the reactor thread (commands, worker threads);
reactor code should call ``VStore.contains`` instead.

    control = ControlFiles(home.control, sql_lookup=SqlControlLookup(backend_for_home(home)))
"""

from __future__ import annotations

import threading

from indimail.fastlog import Logger
from . import schema
from .backend import Backend


class SqlControlLookup:
    """Callable ``(table, key) -> bool`` over one backend; a missing table is empty."""

    log = Logger()

    def __init__(self, backend: Backend):
        self.backend = backend
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list = []

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.backend.connect()
            with self._lock:
                self._connections.append(conn)
        return conn

    def __call__(self, table: str, key: str) -> bool:
        schema.check_name(table)
        sql = self.backend.sql(f"SELECT email FROM {table} WHERE email = %s")
        for attempt in (1, 2):
            conn = self._connection()
            cur = conn.cursor()
            try:
                cur.execute(sql, (key.lower(),))
                found = cur.fetchone() is not None
                conn.commit()   # end the read so the next call sees new rows
                return found
            except Exception as exc:
                if self.backend.missing_table(exc):
                    return False
                if attempt == 2 or not self._is_disconnect(exc):
                    raise
                self._drop(conn)
            finally:
                cur.close()
        return False

    def _is_disconnect(self, exc: Exception) -> bool:
        return type(exc).__name__ in ("OperationalError", "InterfaceError")

    def _drop(self, conn) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        try:
            conn.close()
        except Exception:
            self.log.failure("closing a dead database connection")

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except Exception:
                self.log.failure("closing a database connection")
        self._local = threading.local()
