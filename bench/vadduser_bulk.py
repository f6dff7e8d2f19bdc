#!/usr/bin/env python3
"""Time ``vadduser`` for many users: the store's add path, SQLite and MariaDB.

Creates a fresh home with one virtual domain and adds ``--users`` users
(default 10,000) through the same :class:`~indimail.vdomain.admin.Admin`
call the ``vadduser`` command makes (hashed directory layout, Maildir,
SHA512-crypt password), ``--parallel`` at a time, then prints the total
time and users/s.  One ``vadduser`` process is also timed for the cost a
shell loop pays per user.  MariaDB is ``127.0.0.1:root::3306`` (empty
password) unless ``--mysql HOST_MYSQL_LINE`` says otherwise; its database is
dropped afterwards.

    /tmp/venv/bin/python bench/vadduser_bulk.py --users 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one_process_time(home: Path, env: dict[str, str]) -> float:
    """Wall time of one ``vadduser`` command (interpreter start included)."""
    tool = Path(sys.executable).parent / "vadduser"
    started = time.monotonic()
    subprocess.run([str(tool), "--home", str(home), "single@bench.example", "secret-pw"],
                   check=True, env=env, capture_output=True)
    return time.monotonic() - started


def _mysql(line: str, database: str, statement: str) -> None:
    """Blocking: one statement on the server of host.mysql *line* (no database)."""
    import pymysql

    from indimail.vdomain.backend import parse_host_mysql
    backend = parse_host_mysql(line, {"MYSQL_DATABASE": database, "MYSQL_PASSWD": ""})
    conn = pymysql.connect(**backend.connect_kwargs(with_database=False))
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def run(backend: str, users: int, parallel: int, mysql: str) -> dict:
    from twisted.internet import defer, task

    from indimail.config.home import Home
    from indimail.config.init import init_home
    from indimail.vdomain.admin import Admin
    from indimail.vdomain.store import open_store

    root = Path(tempfile.mkdtemp(prefix=f"vadduser-{backend}-"))
    home_path = root / "home"
    init_home(home_path)
    env = dict(os.environ, INDIMAIL_HOME=str(home_path))
    database = None
    if backend == "mysql":
        database = "indimail_bench_" + uuid.uuid4().hex[:12]
        env.update(MYSQL_HOST=mysql, MYSQL_DATABASE=database, MYSQL_PASSWD="")
        _mysql(mysql, database, f"CREATE DATABASE {database}")
    home = Home(home_path)
    result: dict = {"backend": backend, "users": users, "parallel": parallel}

    async def body(reactor):
        store = await open_store(home, env, reactor=reactor)
        admin = Admin(home, store, reactor=reactor)
        try:
            await admin.add_domain("bench.example")
            started = time.monotonic()
            sem = defer.DeferredSemaphore(parallel)
            await defer.gatherResults([
                sem.run(lambda n=n: defer.ensureDeferred(
                    admin.add_user(f"user{n:06d}@bench.example", f"pw-{n}")))
                for n in range(users)], consumeErrors=True)
            result["seconds"] = time.monotonic() - started
        finally:
            await defer.maybeDeferred(store.close)

    try:
        task.react(lambda reactor: defer.ensureDeferred(body(reactor)))
    except SystemExit as exit_:
        if exit_.code:
            raise
    result["one_process_seconds"] = one_process_time(home_path, env)
    if database is not None:
        _mysql(mysql, database, f"DROP DATABASE IF EXISTS {database}")
    shutil.rmtree(root, ignore_errors=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=10000)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    p.add_argument("--mysql", default="127.0.0.1:root::3306", help="a host.mysql line")
    args = p.parse_args(argv)
    backends = ["sqlite", "mysql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        # task.react stops the reactor: each backend runs in its own interpreter
        if len(backends) > 1:
            out = subprocess.run([sys.executable, __file__, "--backend", backend,
                                  "--users", str(args.users), "--parallel", str(args.parallel),
                                  "--mysql", args.mysql], check=False)
            if out.returncode:
                return out.returncode
            continue
        r = run(backend, args.users, args.parallel, args.mysql)
        print(f"{backend:6} vadduser x {r['users']}: {r['seconds']:.1f} s "
              f"({r['users'] / r['seconds']:.0f} users/s, {r['parallel']} at a time); "
              f"one vadduser process: {r['one_process_seconds'] * 1000:.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
