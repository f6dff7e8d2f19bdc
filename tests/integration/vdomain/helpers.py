"""Backends for the store tests: a SQLite file, or a fresh MariaDB database per test.

MariaDB is reached as ``INDIMAIL_TEST_MYSQL`` (a host.mysql line), by default
``127.0.0.1:root::3306`` with an empty password (``MYSQL_PASSWD`` empty, as
IndiMail reads an empty password field as its default ``ssh-1.5-``) - the
server of the development machine and of CI.
"""

import os
import uuid
from pathlib import Path

import pymysql
from twisted.internet import threads

from indimail.vdomain.backend import SqliteBackend, parse_host_mysql

MYSQL = os.environ.get("INDIMAIL_TEST_MYSQL", "127.0.0.1:root::3306")


def sqlite_backend(case):
    return SqliteBackend(str(Path(case.mktemp()) / "domains" / "indimail.db"))


def mysql_backend(case):
    """A backend on a database name unique to this test, dropped at cleanup."""
    name = "indimail_test_" + uuid.uuid4().hex[:16]
    backend = parse_host_mysql(MYSQL, {"MYSQL_DATABASE": name, "MYSQL_PASSWD": ""})

    def drop():
        conn = pymysql.connect(**backend.connect_kwargs(with_database=False))
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
        finally:
            conn.close()
    case.addCleanup(lambda: threads.deferToThread(drop))
    return backend


def run_sql(backend, statements, with_database=True):
    """Blocking: run *statements* on a plain connection (for tests' own setup)."""
    conn = backend.connect(with_database=with_database)
    try:
        cur = conn.cursor()
        for statement in statements:
            if isinstance(statement, tuple):
                cur.execute(*statement)
            else:
                cur.execute(statement)
        conn.commit()
        return cur.fetchall()
    finally:
        conn.close()

