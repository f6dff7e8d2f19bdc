#!/usr/bin/env python3
"""SMTP AUTH PLAIN against the virtual-domain store, and the reactor meanwhile.

A fresh home gets a virtual domain (``vadddomain``) and ``--users`` users
added through the call ``vadduser`` makes (SHA512-crypt, its default); the
store is SQLite in the home (the embedded default) or, with ``--backend
mysql``, a fresh MariaDB database named by ``control/host.mysql`` (dropped at
the end).  The service runs as an admin starts it (``twistd -n indimail
--home H``); with a store in the home it checks AUTH against it
(:class:`~indimail.vdomain.credchecker.StoreChecker`).

AUTH PLAIN is offered without TLS unless ``SECURE_AUTH`` or ``FORCE_TLS`` is
set (``indimail/auth/advertise.py``, ``indimail/smtp/authcommand.py``); a
fresh home sets neither, so the clients authenticate in clear text by
default and ``--tls`` makes them say STARTTLS first.  The harness checks
that EHLO offers PLAIN before it starts.

``--clients`` concurrent clients authenticate as fast as they can for
``--duration`` seconds, each login its own connection (EHLO, AUTH PLAIN,
QUIT: a session authenticates once).  Meanwhile a separate process holds
one session open and sends NOOP every ``--noop-interval`` (10 ms),
timing each reply.  Prints authentications/s, the AUTH round trip, and the
NOOP latency p50/p99/max before and during the burst; the target is every
NOOP answered within 50 ms during the burst (the hashing must never block
the reactor).  Exit 0 when it passes.

    /tmp/venv/bin/python bench/auth_burst.py
    /tmp/venv/bin/python bench/auth_burst.py --backend mysql --clients 20 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcpt_check import (DOMAIN, Database, IndimailError, ReplyError, ServicePeer,  # noqa: E402
                        close, command, connect, render_summary, run_tool, summarise,
                        tool_env, verdict)
from ready import free_port  # noqa: E402

TARGET_NOOP_MAX = 0.050


def address(n: int) -> str:
    return f"auth{n:05d}@{DOMAIN}"


def password(n: int) -> str:
    return f"pw-{n}-secret"


def plain_token(login: str, secret: str) -> str:
    """AUTH PLAIN's initial response: base64 of ``\\0login\\0password``."""
    return base64.b64encode(b"\0" + login.encode() + b"\0" + secret.encode()).decode()


def offers_plain(ehlo: bytes) -> bool:
    """Whether an EHLO reply lists PLAIN on its AUTH line."""
    for line in ehlo.decode(errors="replace").splitlines():
        words = line[4:].upper().split()
        if words and words[0] == "AUTH" and "PLAIN" in words[1:]:
            return True
    return False


def split_samples(samples: list[tuple[float, float]], start: float,
                  end: float) -> tuple[list[float], list[float]]:
    """NOOP latencies sent before *start* and those sent in [start, end]."""
    before = [lat for sent, lat in samples if sent < start]
    during = [lat for sent, lat in samples if start <= sent <= end]
    return before, during


# -- the users --------------------------------------------------------------------

def add_users(home: Path, env: dict[str, str], users: int, parallel: int,
              hash_name: str = "SHA512") -> float:
    """``users`` users through vadduser's call (``vadduser -h`` *hash_name*,
    SHA512-crypt by default); seconds taken.
    Runs a reactor with task.react: call it once per process."""
    from twisted.internet import defer, task

    from indimail.config.home import Home
    from indimail.vdomain.admin import Admin, hash_scheme
    from indimail.vdomain.store import open_store

    scheme = hash_scheme(hash_name)
    took: list[float] = []

    async def body(reactor):
        store = await open_store(Home(home), env, reactor=reactor)
        admin = Admin(Home(home), store, reactor=reactor)
        try:
            started = time.monotonic()
            sem = defer.DeferredSemaphore(parallel)
            await defer.gatherResults([
                sem.run(lambda n=n: defer.ensureDeferred(
                    admin.add_user(address(n), password(n), scheme=scheme)))
                for n in range(users)], consumeErrors=True)
            took.append(time.monotonic() - started)
        finally:
            await defer.maybeDeferred(store.close)

    try:
        task.react(lambda reactor: defer.ensureDeferred(body(reactor)))
    except SystemExit as exit_:
        if exit_.code:
            raise IndimailError(f"adding users failed (exit {exit_.code})") from None
    return took[0]


def prepare_home(root: Path, db: Database | None, users: int,
                 hash_name: str = "SHA512") -> tuple[Path, dict]:
    """Home, domain (vadddomain) and users; the extra environment of the service."""
    home = root / "home"
    extra = db.env() if db is not None else {}
    env = tool_env(home, extra)
    run_tool("indimail", "init", "--home", str(home), env=env)
    if db is not None:
        (home / "control" / "host.mysql").write_text(db.line + "\n")
    run_tool("vadddomain", "--home", str(home), DOMAIN, "postmaster-pw", env=env)
    seconds = add_users(home, env, users, 8, hash_name)
    print(f"added {users} users with {hash_name} passwords in {seconds:.1f} s",
          file=sys.stderr, flush=True)
    return home, extra


# -- the NOOP prober (its own process) ----------------------------------------------

def noop_probe(port: int, interval: float, out=sys.stdout, stop=sys.stdin) -> None:
    """One session: EHLO, print ``ready``, then NOOP every *interval* until a
    line (or EOF) arrives on *stop*; then print JSON [[sent, latency], ...]
    (``time.monotonic`` seconds, comparable across processes)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = sock.makefile("rb")

    def reply() -> bytes:
        while True:
            line = f.readline()
            if not line:
                raise ReplyError("NOOP session closed")
            if line[3:4] != b"-":
                return line
    reply()
    sock.sendall(b"EHLO noop.prober\r\n")
    reply()
    out.write("ready\n")
    out.flush()
    samples = []
    due = time.monotonic()
    while True:
        wait = max(0.0, due - time.monotonic())
        if select.select([stop], [], [], wait)[0]:
            break
        sent = time.monotonic()
        sock.sendall(b"NOOP\r\n")
        line = reply()
        samples.append((sent, time.monotonic() - sent))
        if not line.startswith(b"250"):
            raise ReplyError(f"NOOP answered {line!r}")
        due += interval
        if due < time.monotonic():     # late: keep the pace, do not burst
            due = time.monotonic()
    sock.sendall(b"QUIT\r\n")
    sock.close()
    out.write(json.dumps(samples) + "\n")
    out.flush()


class Prober:
    """The NOOP prober as a child process of this script."""

    def __init__(self, port: int, interval: float):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--noop-probe", str(port),
             "--noop-interval", str(interval)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise IndimailError(f"NOOP prober did not start: {line!r}")

    def finish(self) -> list[tuple[float, float]]:
        out, _ = self.proc.communicate("stop\n", timeout=60)
        if self.proc.returncode:
            raise IndimailError(f"NOOP prober failed ({self.proc.returncode})")
        return [tuple(s) for s in json.loads(out)]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- the AUTH clients ---------------------------------------------------------------

async def authenticate(port: int, n: int, tls: ssl.SSLContext | None) -> tuple[float, bytes]:
    """One login on its own connection: (AUTH round trip, reply)."""
    reader, writer, ehlo = await connect(port)
    try:
        if tls is not None:
            await command(reader, writer, "STARTTLS", 220)
            await writer.start_tls(tls)
            _, ehlo = await command(reader, writer, "EHLO bench.client", 250)
        if not offers_plain(ehlo):
            raise ReplyError(f"AUTH PLAIN is not offered: {ehlo!r}")
        started = time.perf_counter()
        code, text = await command(reader, writer,
                                   f"AUTH PLAIN {plain_token(address(n), password(n))}", None)
        took = time.perf_counter() - started
        return took, (b"" if code == 235 else text)
    finally:
        await close(reader, writer)


async def auth_client(port: int, users: int, rng: random.Random, deadline: float,
                      tls, latencies: list[float], failures: list[bytes]) -> None:
    while time.monotonic() < deadline:
        took, failed = await authenticate(port, rng.randrange(users), tls)
        latencies.append(took)
        if failed:
            failures.append(failed)


async def burst(port: int, clients: int, users: int, duration: float, tls,
                rng: random.Random) -> dict:
    latencies: list[float] = []
    failures: list[bytes] = []
    start = time.monotonic()
    await asyncio.gather(*(auth_client(port, users, random.Random(rng.random()),
                                       start + duration, tls, latencies, failures)
                           for _ in range(clients)))
    end = time.monotonic()
    result = summarise(latencies, end - start)
    result.update(start=start, end=end, failures=len(failures),
                  first_failure=failures[0].decode(errors="replace").strip() if failures else "",
                  ok_rate=(len(latencies) - len(failures)) / (end - start))
    return result


def tls_context(tls: bool) -> ssl.SSLContext | None:
    if not tls:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def measure(root: Path, extra: dict, args, rng: random.Random) -> dict:
    peer = ServicePeer(root, free_port(), extra, workers=args.smtp_workers)
    tls = tls_context(args.tls)
    with peer:
        try:
            # warm up: opens the store in every worker, first hashes
            asyncio.run(burst(peer.port, args.clients, args.users, 1.0, tls, rng))
            prober = Prober(peer.port, args.noop_interval)
            try:
                time.sleep(args.idle)           # NOOP figures of the idle service
                result = asyncio.run(burst(peer.port, args.clients, args.users,
                                           args.duration, tls, rng))
                samples = prober.finish()
            finally:
                prober.kill()
        except ReplyError as exc:
            raise IndimailError(f"{exc}\n{peer.log_tail()}") from exc
    idle, during = split_samples(samples, result["start"], result["end"])
    result["noop_idle"] = summarise(idle, args.idle)
    result["noop_burst"] = summarise(during, result["end"] - result["start"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100, help="virtual users (100)")
    p.add_argument("--clients", type=int, default=10, help="concurrent AUTH clients (10)")
    p.add_argument("--duration", type=float, default=20.0, help="burst seconds (20)")
    p.add_argument("--noop-interval", type=float, default=0.010, help="seconds (0.010)")
    p.add_argument("--idle", type=float, default=1.0,
                   help="seconds of NOOPs before the burst (1)")
    p.add_argument("--backend", choices=("sqlite", "mysql"), default="sqlite")
    p.add_argument("--mysql", default="127.0.0.1:root::3306", help="a host.mysql line")
    p.add_argument("--tls", action="store_true", help="STARTTLS before AUTH")
    p.add_argument("--hash", choices=("SHA512", "SHA256", "MD5"), default="SHA512",
                   help="vadduser -h: the users' password hash (SHA512, vadduser's default)")
    p.add_argument("--smtp-workers", default=None,
                   help="twistd --smtp-workers (default: the service's own, auto)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the home (and database)")
    p.add_argument("--noop-probe", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.noop_probe is not None:
        noop_probe(args.noop_probe, args.noop_interval)
        return 0
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="auth-burst-"))
    db = Database(args.mysql) if args.backend == "mysql" else None
    try:
        if db is not None:
            try:
                db.create()
            except Exception as exc:
                print(f"auth_burst: cannot create a database on {args.mysql}: {exc}",
                      file=sys.stderr)
                return 2
        _, extra = prepare_home(root, db, args.users, args.hash)
        r = measure(root, extra, args, rng)
    except IndimailError as exc:
        print(f"auth_burst: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {root}" + (f" and database {db.name}" if db else ""), file=sys.stderr)
        else:
            if db is not None:
                db.drop()
            shutil.rmtree(root, ignore_errors=True)
    line, ok = verdict("slowest NOOP reply during the AUTH burst", r["noop_burst"]["max"],
                       TARGET_NOOP_MAX)
    if r["failures"] or not r["noop_burst"]["count"]:
        ok = False
    if args.json:
        print(json.dumps({"backend": args.backend, "users": args.users, "hash": args.hash,
                          "clients": args.clients, "tls": args.tls, **r, "pass": ok}, indent=2))
        return 0 if ok else 1
    print(f"AUTH PLAIN, {args.hash}-crypt, {args.backend}, {args.users} users, "
          f"{args.clients} clients, {args.duration:g} s{', STARTTLS' if args.tls else ''}")
    print(f"authentications/s: {r['ok_rate']:.1f}")
    print(render_summary("AUTH round trip", r, unit="AUTH"))
    print(render_summary("NOOP, idle service", r["noop_idle"], unit="NOOP"))
    print(render_summary("NOOP, during the burst", r["noop_burst"], unit="NOOP"))
    if r["failures"]:
        print(f"FAIL  {r['failures']} logins refused, first: {r['first_failure']!r}")
    if not r["noop_burst"]["count"]:
        print("FAIL  no NOOP was answered during the burst")
    print(verdict("NOOP p99 during the AUTH burst", r["noop_burst"]["p99"],
                  TARGET_NOOP_MAX)[0].replace("PASS", "info").replace("FAIL", "info"))
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
