#!/usr/bin/env python3
"""RCPT round trips with CHECKRECIPIENT against MariaDB holding 100,000 users.

A fresh MariaDB database (``--mysql``, a ``host.mysql`` line; dropped at the
end) gets one virtual domain made by ``vadddomain`` and one user made by
``vadduser``; the other ``--users`` rows are bulk-inserted into IndiMail's
``indimail`` table laid out like that user's (same password hash, the
hashed directory layout ``vadduser`` would give, dir_control's user count
updated; no Maildirs: a RCPT check never reads them).  The service runs as
an admin starts it (``twistd -n indimail --home H``) with ``control/host.mysql``
naming the server and ``MYSQL_DATABASE``/``MYSQL_PASSWD`` in its environment.

Two phases in the same run: a baseline without ``CHECKRECIPIENT`` and
the check with ``variables/smtpd/CHECKRECIPIENT=1``.  Each phase first
probes an unknown user (baseline: 250; check: 550 after the 5 s penalty,
which proves the store is consulted), then ``--sessions`` concurrent SMTP
sessions each send MAIL and ``--per-mail`` RCPTs of random existing users,
``--rcpts`` in all, one command at a time; every RCPT's round trip is
timed, in ``--rounds`` measured rounds per phase (fresh recipients each).
Prints, for both phases, the round with the median p99 (p50/p90/p99 per RCPT
and RCPTs/s) and every round's p99, and the target (median p99 < 5 ms with
CHECKRECIPIENT) as PASS/FAIL; exit 0 when it passes.

    /tmp/venv/bin/python bench/rcpt_check.py
    /tmp/venv/bin/python bench/rcpt_check.py --users 10000 --rcpts 200   # quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from indimail_peer import PROJECT_ROOT, IndimailError, IndimailPeer, venv_tool  # noqa: E402
from latency import percentile  # noqa: E402
from rcpt_driver import ReplyError, drive, plan  # noqa: E402
from ready import free_port  # noqa: E402
from smtp_resources import process_group  # noqa: E402

sys.path.insert(0, str(PROJECT_ROOT))

DOMAIN = "bench.example"
SENDER = "bench@example.org"
TARGET_P99 = 0.005
ABSENT_PROBE = "nosuchuser-bench"
USER_COLUMNS = ("pw_name", "pw_domain", "pw_passwd", "pw_uid", "pw_gid",
                "pw_gecos", "pw_dir", "pw_shell")


# -- figures ----------------------------------------------------------------------

def summarise(latencies: list[float], seconds: float) -> dict[str, float]:
    """p50/p90/p99/max (seconds) of *latencies* and their rate over *seconds*."""
    if not latencies:
        return {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "rate": 0.0}
    return {"count": len(latencies), "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90), "p99": percentile(latencies, 99),
            "max": max(latencies), "rate": len(latencies) / seconds if seconds > 0 else 0.0}


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round whose p99 is the median (the upper middle of an even count):
    one noisy round neither makes nor breaks the figure."""
    return sorted(rounds, key=lambda r: r["p99"])[len(rounds) // 2]


def render_summary(label: str, s: dict[str, float], unit: str = "RCPT") -> str:
    """One line of figures in milliseconds and per second."""
    return (f"{label:24} {s['count']:7d} {unit}s  p50 {s['p50'] * 1000:6.2f} ms  "
            f"p90 {s['p90'] * 1000:6.2f} ms  p99 {s['p99'] * 1000:6.2f} ms  "
            f"max {s['max'] * 1000:7.2f} ms  {s['rate']:8.0f} {unit}s/s")


def verdict(text: str, value: float, limit: float, scale: float = 1000.0,
            unit: str = "ms") -> tuple[str, bool]:
    """``PASS``/``FAIL`` line for *value* < *limit* (printed times *scale*)."""
    ok = value < limit
    return (f"{'PASS' if ok else 'FAIL'}  {text} < {limit * scale:g} {unit}: "
            f"{value * scale:.2f} {unit}", ok)


def cpu_seconds(stat: str, ticks: int | None = None) -> float:
    """utime + stime of one ``/proc/PID/stat`` line, in seconds."""
    fields = stat[stat.rfind(")") + 2:].split()      # from field 3 (state) on
    ticks = ticks or os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def pids_named(names: tuple[str, ...], proc: Path = Path("/proc")) -> list[int]:
    """Processes whose command name is one of *names* (the database server)."""
    pids = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_of(pids: list[int], proc: Path = Path("/proc")) -> float:
    """CPU seconds used so far by *pids* (those still there)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds((proc / str(pid) / "stat").read_text())
        except OSError:
            continue
    return total


class CpuMeter:
    """CPU seconds of the service's process group, of the database server and
    of this client between :meth:`start` and :meth:`stop` (figures the
    machine's other load disturbs far less than latencies).  All three share
    the machine's cores: under a closed loop the p99 follows their sum."""

    def __init__(self, pgid: int, db_names: tuple[str, ...] = ("mariadbd", "mysqld")):
        self.pgid = pgid
        self.db_names = db_names

    def _sample(self) -> tuple[float, float, float]:
        return (cpu_of(process_group(self.pgid)), cpu_of(pids_named(self.db_names)),
                time.process_time())

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        return {"service_cpu": after[0] - self.before[0], "db_cpu": after[1] - self.before[1],
                "client_cpu": after[2] - self.before[2]}


# -- the users --------------------------------------------------------------------

def user_name(n: int) -> str:
    return f"user{n:06d}"


def user_rows(template: dict, domain_dir: str, first: int, count: int,
              start_index: int) -> list[tuple]:
    """Rows for users *first* .. *first+count-1*, copied from *template* (the
    row vadduser wrote) with each user's own name, gecos and home directory;
    the *n*-th added user of the domain (from *start_index*) gets vadduser's
    hashed subdirectory."""
    from indimail.vdomain.admin import user_subdir
    rows = []
    for k in range(count):
        name = user_name(first + k)
        sub = user_subdir(start_index + k)
        home = f"{domain_dir}/{sub}/{name}" if sub else f"{domain_dir}/{name}"
        row = dict(template, pw_name=name, pw_gecos=name, pw_dir=home)
        rows.append(tuple(row[c] for c in USER_COLUMNS))
    return rows


def pick_recipients(rng: random.Random, users: int, count: int) -> list[str]:
    """*count* addresses of random existing users (0 .. users-1)."""
    return [f"{user_name(rng.randrange(users))}@{DOMAIN}" for _ in range(count)]


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- MariaDB ----------------------------------------------------------------------

class Database:
    """A fresh database on the server of a ``host.mysql`` line (blocking calls)."""

    def __init__(self, line: str, name: str | None = None):
        from indimail.vdomain.backend import parse_host_mysql
        self.line = line
        self.name = name or "indimail_bench_" + uuid.uuid4().hex[:12]
        self.backend = parse_host_mysql(line, {"MYSQL_DATABASE": self.name,
                                                "MYSQL_PASSWD": ""})

    def env(self) -> dict[str, str]:
        """What a service or command needs besides ``control/host.mysql``."""
        return {"MYSQL_DATABASE": self.name, "MYSQL_PASSWD": self.backend.password}

    def execute(self, statement: str, args=None, with_database: bool = True):
        conn = self.backend.connect(with_database)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                rows = cur.fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def create(self) -> None:
        self.execute(f"CREATE DATABASE {self.name}", with_database=False)

    def drop(self) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {self.name}", with_database=False)

    def insert_users(self, rows: list[tuple], batch: int = 2000) -> None:
        """Multi-row INSERTs into ``indimail`` (PyMySQL folds executemany)."""
        marks = ", ".join(["%s"] * len(USER_COLUMNS))
        sql = f"INSERT INTO indimail ({', '.join(USER_COLUMNS)}) VALUES ({marks})"
        conn = self.backend.connect()
        try:
            with conn.cursor() as cur:
                for part in chunks(rows, batch):
                    cur.executemany(sql, part)
            conn.commit()
        finally:
            conn.close()


# -- the service ------------------------------------------------------------------

def tool_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment of the admin commands and of twistd."""
    env = dict(os.environ)
    for name in ("QUEUEDIR", "CONTROLDIR", "QUEUE_BASE", "MYSQL_HOST", "CHECKRECIPIENT",
                 "SECURE_AUTH", "FORCE_TLS"):
        env.pop(name, None)
    env["INDIMAIL_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def run_tool(name: str, *args: str, env: dict[str, str]) -> str:
    """Run one of the project's commands; IndimailError with its output on failure."""
    out = subprocess.run([str(venv_tool(name)), *args], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise IndimailError(f"{name} {' '.join(args)} failed ({out.returncode}):\n"
                            f"{out.stderr}{out.stdout}")
    return out.stdout


class ServicePeer(IndimailPeer):
    """``twistd -n indimail`` on a home the benchmark has prepared itself."""

    def __init__(self, root: Path, port: int, extra_env: dict[str, str],
                 workers: str | None = None, **kw):
        super().__init__(root, port, **kw)
        self.variables = {}
        self.extra_env = extra_env
        self.workers = workers

    def prepare(self) -> None:
        """The home is ready; only check the programs are there."""
        for tool in (self.twistd, self.indimail):
            if not os.access(tool, os.X_OK):
                raise IndimailError(f"{tool} not found: run the harness with the "
                                    "project's virtualenv python")

    def _env(self) -> dict[str, str]:
        return tool_env(self.home, self.extra_env)

    def command(self) -> list[str]:
        argv = super().command()
        if self.workers is not None:
            argv += ["--smtp-workers", str(self.workers)]
        return argv


# -- the SMTP client --------------------------------------------------------------

async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(code, full text) of one (possibly multi-line) reply."""
    lines = []
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise ReplyError(f"connection closed after {b''.join(lines)!r}")
        lines.append(line)
        if line[3:4] != b"-":
            break
    try:
        return int(lines[-1][:3]), b"".join(lines)
    except ValueError:
        raise ReplyError(f"not an SMTP reply: {lines[-1]!r}") from None


async def command(reader, writer, line: str, expect: int | None) -> tuple[int, bytes]:
    """Send *line*, read the reply; ReplyError unless the code is *expect*."""
    writer.write(line.encode() + b"\r\n")
    code, text = await read_reply(reader)
    if expect is not None and code != expect:
        raise ReplyError(f"{line!r}: expected {expect}, got {text!r}")
    return code, text


async def connect(port: int, helo: str = "bench.client"):
    """An ESMTP session past EHLO: (reader, writer, EHLO reply text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    code, text = await read_reply(reader)
    if code != 220:
        raise ReplyError(f"greeting {text!r}")
    _, ehlo = await command(reader, writer, f"EHLO {helo}", 250)
    return reader, writer, ehlo


async def close(reader, writer) -> None:
    try:
        await command(reader, writer, "QUIT", None)
    except (ReplyError, OSError):
        pass
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def probe(port: int, expect: int) -> bytes:
    """RCPT of an unknown user of the domain: the reply shows whether
    CHECKRECIPIENT looks at the store (550) or not (250)."""
    reader, writer, _ = await connect(port)
    try:
        await command(reader, writer, f"MAIL FROM:<{SENDER}>", 250)
        _, text = await command(reader, writer, f"RCPT TO:<{ABSENT_PROBE}@{DOMAIN}>", expect)
        return text
    finally:
        await close(reader, writer)


# -- one run ----------------------------------------------------------------------

def prepare_home(root: Path, db: Database, users: int) -> Path:
    """Home, domain and first user through the commands, then the bulk rows."""
    home = root / "home"
    env = tool_env(home, db.env())
    run_tool("indimail", "init", "--home", str(home), env=env)
    (home / "control" / "host.mysql").write_text(db.line + "\n")
    run_tool("vadddomain", "--home", str(home), DOMAIN, "postmaster-pw", env=env)
    run_tool("vadduser", "--home", str(home), f"{user_name(0)}@{DOMAIN}", "bench-pw", env=env)
    cols = ", ".join(USER_COLUMNS)
    row = db.execute(f"SELECT {cols} FROM indimail WHERE pw_name = %s AND pw_domain = %s",
                     (user_name(0), DOMAIN))[0]
    template = dict(zip(USER_COLUMNS, row))
    used = db.execute("SELECT cur_users FROM dir_control WHERE domain = %s", (DOMAIN,))
    start_index = int(used[0][0]) if used and used[0][0] is not None else 2
    domain_dir = str(home / "domains" / DOMAIN)
    started = time.monotonic()
    db.insert_users(user_rows(template, domain_dir, 1, users - 1, start_index))
    db.execute("UPDATE dir_control SET cur_users = %s WHERE domain = %s",
               (start_index + users - 1, DOMAIN))
    count = db.execute("SELECT COUNT(*) FROM indimail WHERE pw_domain = %s", (DOMAIN,))[0][0]
    print(f"loaded {count} users of {DOMAIN} into MariaDB {db.name} "
          f"({time.monotonic() - started:.1f} s for the bulk rows)", file=sys.stderr, flush=True)
    return home


def set_checkrecipient(home: Path, on: bool) -> None:
    path = home / "variables" / "smtpd" / "CHECKRECIPIENT"
    path.parent.mkdir(parents=True, exist_ok=True)
    if on:
        path.write_text("1\n")
    elif path.exists():
        path.unlink()


def phase(root: Path, db: Database, check: bool, args, rng: random.Random) -> dict:
    """Start the service with or without CHECKRECIPIENT, probe, warm up, measure."""
    set_checkrecipient(root / "home", check)
    peer = ServicePeer(root, free_port(), db.env(), workers=args.smtp_workers)
    rounds = [[pick_recipients(rng, args.users, args.rcpts) for _ in range(args.sessions)]
              for _ in range(args.rounds)]
    warm = [pick_recipients(rng, args.users, args.warmup) for _ in range(args.sessions)]
    label = "CHECKRECIPIENT=1" if check else "baseline (no check)"
    with peer:
        meter = CpuMeter(peer._proc.pid)
        try:
            probe_text = asyncio.run(probe(peer.port, 550 if check else 250))
            if args.warmup:
                drive(peer.port, [plan(w, args.per_mail, SENDER) for w in warm])
            meter.start()
            measured = [drive(peer.port, [plan(r, args.per_mail, SENDER) for r in per_session],
                              args.sessions / args.rate if args.rate > 0 else 0.0)
                        for per_session in rounds]
            cpu = meter.stop()
        except ReplyError as exc:
            raise IndimailError(f"{label}: {exc}\n{peer.log_tail()}") from exc
    summaries = [summarise(latencies, seconds) for latencies, _, seconds in measured]
    refused = [text for _, texts, _ in measured for text in texts]
    result = dict(median_round(summaries))
    result.update({k: v / len(measured) for k, v in cpu.items()})   # per round, as count
    result["round_p99"] = [r["p99"] for r in summaries]
    result.update(label=label, refused=len(refused),
                  probe=probe_text.decode(errors="replace").strip(),
                  first_refusal=refused[0].decode(errors="replace").strip() if refused else "")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000, help="users in the domain (100000)")
    p.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions (20)")
    p.add_argument("--rcpts", type=int, default=1000, help="RCPTs per session (1000)")
    p.add_argument("--per-mail", type=int, default=100, help="RCPTs per MAIL (100)")
    p.add_argument("--rounds", type=int, default=3,
                   help="measured rounds per phase; the median round's figures count (3)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="offered RCPTs/s in all, paced (default 0: back to back)")
    p.add_argument("--warmup", type=int, default=50, help="untimed RCPTs per session first (50)")
    p.add_argument("--smtp-workers", default=None,
                   help="twistd --smtp-workers (default: the service's own, auto)")
    p.add_argument("--mysql", default="127.0.0.1:root::3306", help="a host.mysql line")
    p.add_argument("--seed", type=int, default=None, help="random seed of the recipients")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the home and the database")
    args = p.parse_args(argv)
    if args.users < 2:
        p.error("--users must be at least 2")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        print("rcpt_check: PyMySQL is missing", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="rcpt-check-"))
    db = Database(args.mysql)
    results = []
    try:
        try:
            db.create()
        except Exception as exc:
            print(f"rcpt_check: cannot create a database on {args.mysql}: {exc}",
                  file=sys.stderr)
            return 2
        prepare_home(root, db, args.users)
        for check in (False, True):
            r = phase(root, db, check, args, rng)
            results.append(r)
            print(f"{r['label']}: probe {r['probe']!r}", file=sys.stderr, flush=True)
    except IndimailError as exc:
        print(f"rcpt_check: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            db.drop()
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root} and database {db.name}", file=sys.stderr)
    base, check = results
    line, ok = verdict(f"median p99 per RCPT with CHECKRECIPIENT=1, {args.sessions} sessions, "
                       f"{args.users} users", check["p99"], TARGET_P99)
    for r in results:
        if r["refused"]:
            ok = False
    if args.json:
        print(json.dumps({"users": args.users, "sessions": args.sessions,
                          "baseline": base, "checkrecipient": check, "pass": ok}, indent=2))
    else:
        pace = f", paced at {args.rate:g} RCPTs/s" if args.rate > 0 else ", back to back"
        print(f"{args.users} users in MariaDB, {args.sessions} sessions x {args.rcpts} RCPTs "
              f"({args.per_mail} per MAIL){pace}, {args.rounds} round(s) per phase; "
              "the round with the median p99 shown")
        for r in results:
            print(render_summary(r["label"], r))
            print(f"{'':24} p99 of each round: "
                  + ", ".join(f"{v * 1000:.2f} ms" for v in r["round_p99"]))
            print(f"{'':24} CPU per RCPT: service {r['service_cpu'] / r['count'] * 1e6:.0f} us, "
                  f"MariaDB {r['db_cpu'] / r['count'] * 1e6:.0f} us, "
                  f"this client {r['client_cpu'] / r['count'] * 1e6:.0f} us")
            if r["refused"]:
                print(f"FAIL  {r['refused']} RCPTs refused, first: {r['first_refusal']!r}")
        print(f"cost of the check: p50 +{(check['p50'] - base['p50']) * 1000:.2f} ms, "
              f"throughput x{check['rate'] / base['rate']:.2f}" if base["rate"] else "")
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
