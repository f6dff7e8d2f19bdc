"""drate: set, show, reset or test a domain's delivery rate.

``drate -d domain -r 50/3600`` writes ``<slowq>/ratelimit/<domain>`` (the
four NUL-terminated fields of :mod:`indimail.send.ratelimit`, under a lock);
``drate -d domain`` shows it as the seed does.  The slowq queue is
``$QUEUE_BASE/slowq`` (else control ``queue_base``, else the home's queue
base); ``-D`` names another rate directory, as does a non-empty
``$RATELIMIT_DIR``.
"""

from __future__ import annotations

import fcntl
import getopt
import os
import sys
import time
from pathlib import Path
from typing import Mapping, TextIO

from ..config.home import Home
from ..send.ratelimit import (RateError, RateState, check_file, evaluate, find_definition,
                              fmt_double, interval_from)

USAGE = "usage: drate [-scR] -d domain -r deliveryRate [-D ratelimit_dir]\n"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def local_date(epoch: int) -> str:
    """``Fri, 28 May 2021 21:47:11 +0530`` (local time, as the seed shows)."""
    t = time.localtime(epoch)
    off = t.tm_gmtoff // 60
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{off // 60:02d}{off % 60:02d}")


def display(state: RateState, now: int) -> str:
    """The query output.  Before the first delivery the last field is shown as
    ``End    Time`` and the rate bare; afterwards ``LastUpdated`` and the rate
    followed by ``OK`` or ``High; need N secs``."""
    conf = evaluate(state.expression)
    elapsed = now - state.start
    rate = state.count / elapsed if elapsed > 0 else 0.0
    lines = [f"Conf   Rate: {state.expression} ({fmt_double(conf)})",
             f"Email Count: {state.count}",
             f"Start  Time: {local_date(state.start)}"]
    if state.count == 0:
        lines += [f"End    Time: {local_date(state.last)}",
                  f"CurrentTime: {local_date(now)}",
                  f"CurrentRate: {fmt_double(rate)}"]
    else:
        verdict = "OK"
        if conf > 0 and rate > conf:
            verdict = f"High; need {int(state.count / conf - elapsed)} secs"
        lines += [f"LastUpdated: {local_date(state.last)}",
                  f"CurrentTime: {local_date(now)}",
                  f"CurrentRate: {fmt_double(rate)} {verdict}"]
    return "\n".join(lines) + "\n"


def update(path: Path, expression: str | None, now: int, *, reset: bool = False,
           consolidate: bool = False) -> RateState:
    """Write the definition: a new file starts counting now; ``+``/``-``
    expressions are appended to the old one; *reset* restarts the counts;
    *consolidate* stores the evaluated rate."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        old = RateState.parse(os.pread(fd, 65536, 0))
        if old is None:
            if expression is None:
                raise FileNotFoundError(f"unable to read: {path.name}")
            state = RateState(expression, 0, now, now)
        else:
            if expression is None:
                text = old.expression
            elif expression[:1] in "+-":
                text = old.expression + expression
            else:
                text = expression
            state = (RateState(text, 0, now, now) if reset
                     else RateState(text, old.count, old.start, old.last))
        evaluate(state.expression)
        if consolidate:
            state = RateState(fmt_double(evaluate(state.expression)), state.count,
                              state.start, state.last)
        os.ftruncate(fd, 0)
        os.pwrite(fd, state.to_bytes(), 0)
        return state
    finally:
        os.close(fd)


def test_once(directory: Path, domain: str, now: int, interval: int, force: bool,
              err: TextIO) -> int:
    """``-t``: count one delivery as slowq-send would, and say how it went."""
    found = find_definition(directory, domain, "remote")
    if found is None:
        err.write(f"{domain}: email rate not configured\n")
        return 0
    check = check_file(found.path, domain, now, interval, found.expression, force=force)
    figures = (f"[{check.count}/{fmt_double(check.rate)}/{fmt_double(check.conf_rate)}] "
               f"need {check.need}")
    if not check.ok:
        err.write(f"drate: warn: {domain}: delivery rate exceeded {figures}\n")
        return 111
    err.write(f"{domain}: email rate {figures}\n")
    return 0


def rate_directory(env: Mapping[str, str], option: str | None) -> Path:
    if option:
        return Path(option) if os.path.isabs(option) else slowq_dir(env) / option
    if env.get("RATELIMIT_DIR", "").strip():
        return Path(env["RATELIMIT_DIR"])
    return slowq_dir(env) / "ratelimit"


def slowq_dir(env: Mapping[str, str]) -> Path:
    home = Home.from_env(env=dict(env))
    if env.get("QUEUE_BASE"):
        return Path(env["QUEUE_BASE"]) / "slowq"
    try:
        base = (home.control / "queue_base").read_text().strip()
    except FileNotFoundError:
        base = ""
    return (Path(base) if base else home.queue_base) / "slowq"


def run(argv: list[str], env: Mapping[str, str], out: TextIO, err: TextIO,
        now: float | None = None) -> int:
    try:
        opts, _args = getopt.getopt(argv, "fltscRd:r:D:C:")
    except getopt.GetoptError:
        err.write(USAGE)
        return 100
    domain = expression = option_dir = None
    show, reset, consolidate, testing, force, count = True, False, False, False, False, 1
    for opt, value in opts:
        if opt == "-d":
            domain = value[value.rfind("@") + 1:]
        elif opt == "-r":
            expression, show = value, False
        elif opt == "-D":
            option_dir = value
        elif opt == "-s":
            show = True
        elif opt == "-R":
            reset, show = True, False
        elif opt == "-c":
            consolidate = True
        elif opt == "-t":
            testing, show = True, False
        elif opt == "-f":
            force = True
        elif opt == "-C":
            count = int(value) if value.isdigit() else 1
    directory = rate_directory(env, option_dir)
    if not domain:
        err.write("domain not specified\n" + USAGE)
        return 111
    now = int(time.time() if now is None else now)
    if not directory.is_dir():
        if show or testing or not directory.parent.is_dir():
            err.write(f"drate: fatal: unable to switch to {directory}: "
                      "No such file or directory\n")
            return 111
        directory.mkdir(mode=0o750)
    path = directory / domain
    try:
        if show:
            state = RateState.parse(path.read_bytes())
            if state is None:
                raise FileNotFoundError
            out.write(display(state, now))
            return 0
        if testing:
            status = 0
            for _ in range(max(count, 1)):
                status = test_once(directory, domain, now, interval_from(env), force, err)
            return status
        if not reset and expression is None:
            err.write("rate expression not specified\n" + USAGE)
            return 111
        if expression is not None and expression[:1] not in "+-":
            evaluate(expression)
        update(path, expression, now, reset=reset, consolidate=consolidate)
        return 0
    except FileNotFoundError:
        err.write(f"unable to read: {domain}: No such file or directory\n")
        return 111
    except RateError as exc:
        err.write(f"drate: fatal: {exc}\n")
        return 100


def main(argv: list[str] | None = None) -> None:
    code = run(sys.argv[1:] if argv is None else argv, os.environ, sys.stdout, sys.stderr)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
