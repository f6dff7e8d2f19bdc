"""Delivery rate control: indimail-mta's ``delivery_rate()`` / ``is_rate_ok()``.

A queue's ``ratelimit/`` directory (or ``$RATELIMIT_DIR``; set but empty
turns rate control off) holds one file per domain, written by ``drate``:
four NUL-terminated fields — rate expression (``50/3600``: deliveries per
second), delivery count, start epoch, last-update epoch.  Before a
recipient is delivered its domain is looked up as ``<domain>``, then in
``ratecontrol`` (``domain:rate`` lines, wildmat or ``QREGEX``), then as
``.global``.  The current rate is count / (now − start); above the
configured rate the delivery waits ``count/conf − (now − start)`` seconds.
The counting restarts when the file was not updated for
``RATELIMIT_INTERVAL`` seconds (default a day).

State is shared by every process delivering from the queue: the file is
locked (``fcntl``) while it is read and rewritten, in a worker thread.  With
``RATELIMIT_REDIS`` set (``host[:port][/db]``) the counters live in Redis
instead, updated by one Lua script, so delivery hosts sharing a queue (or a
rate) respect one rate; the rate expression still comes from the files.
"""

from __future__ import annotations

import ast
import fcntl
import operator
import os
import struct
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Callable, Mapping

from twisted.internet import defer

from indimail.config.wildmat import wildmat

DEFAULT_INTERVAL = 86400
SLEEP_FUZZ = 1           # qmail-send wakes a delayed job a second after it may go
GLOBAL = ".global"
RATECONTROL = "ratecontrol"


class RateError(ValueError):
    """A rate expression that does not evaluate to a number."""


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def evaluate(expression: str) -> float:
    """The value of a rate expression: numbers, ``+ - * /`` and parentheses
    (``50/3600``, ``1790/3600+10/3600``)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise RateError(f"bad rate expression {expression!r}") from exc

    def walk(node) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            try:
                return _OPS[type(node.op)](walk(node.left), walk(node.right))
            except ZeroDivisionError as exc:
                raise RateError(f"division by zero in {expression!r}") from exc
        raise RateError(f"bad rate expression {expression!r}")

    return walk(tree)


def fmt_double(value: float, places: int = 10) -> str:
    """libqmail's ``fmt_double(s, d, 10)``: fixed decimals, truncated."""
    number = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    return format(abs(number) if number == 0 else number, "f")


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


@dataclass(frozen=True)
class RateState:
    """The four fields of a rate file."""

    expression: str
    count: int
    start: int
    last: int

    @classmethod
    def parse(cls, data: bytes) -> "RateState | None":
        fields = data.split(b"\0")
        if not fields or not fields[0]:
            return None
        values = [_int(f) for f in fields[1:4]] + [0] * (3 - len(fields[1:4]))
        return cls(fields[0].decode("utf-8", "replace"), *values)

    def to_bytes(self) -> bytes:
        return b"".join(str(v).encode() + b"\0"
                        for v in (self.expression, self.count, self.start, self.last))


def _int(data: bytes) -> int:
    digits = re.match(rb"\s*(\d*)", data).group(1)
    return int(digits) if digits else 0


@dataclass(frozen=True)
class RateCheck:
    """One decision: may a delivery to *domain* start now?"""

    domain: str
    ok: bool
    count: int          # as upstream logs it: the count this delivery makes
    rate: float         # deliveries per second so far
    conf_rate: float
    need: int           # seconds until the rate allows (negative: allowed since)

    @property
    def delay(self) -> int:
        """How long a held-back delivery waits (qmail-send adds SLEEP_FUZZ)."""
        return max(self.need, 0) + SLEEP_FUZZ

    def log_line(self, queuedesc: str, msgid: int) -> str:
        """The slowq-send log line, word for word."""
        head = f"{queuedesc} {self.domain} msg {msgid}"
        figures = f"{self.count}/{fmt_double(self.rate)}/{fmt_double(self.conf_rate)}"
        if self.ok:
            return f"info: {head}: rate [{figures}] ok since {abs(self.need)} secs"
        return (f"warning: {head}: rate exceeded [{figures}] need {self.need} secs; "
                "will try again later")


def assess(domain: str, conf_rate: float, count: int, start: int, now: int,
           force: bool = False) -> tuple[RateCheck, bool]:
    """``is_rate_ok()`` on counters already reset for the interval: the
    decision and whether the delivery counts (True: count + 1, last = now).

    A negative rate only counts, zero holds every delivery back (upstream's
    comment), otherwise a current rate above the configured one holds back.
    """
    elapsed = now - start
    rate = 0.0 if elapsed == 0 else _float32(_float32(count) / _float32(elapsed))
    if conf_rate > 0:
        need = int(count / conf_rate - elapsed)
    elif conf_rate == 0:
        need = DEFAULT_INTERVAL - elapsed
    else:
        need = -elapsed
    held = not force and conf_rate >= 0 and (conf_rate == 0 or rate > conf_rate)
    if held:
        return RateCheck(domain, False, count + 1, rate, conf_rate, max(need, 0)), False
    return RateCheck(domain, True, count + 1, rate, conf_rate, need), True


def read_state(path: Path) -> RateState | None:
    """Blocking: a rate file's fields (None when missing or empty)."""
    try:
        return RateState.parse(Path(path).read_bytes())
    except FileNotFoundError:
        return None


def check_file(path: Path, domain: str, now: int, interval: int = DEFAULT_INTERVAL,
               expression: str | None = None, force: bool = False) -> RateCheck | None:
    """Blocking: decide and record one delivery in a rate file, under an
    exclusive ``fcntl`` lock so concurrent deliverers count once each.
    *expression* creates the file when missing (``ratecontrol``).  None
    when there is no definition (deliver freely)."""
    flags = os.O_RDWR | (os.O_CREAT if expression else 0)
    try:
        fd = os.open(path, flags, 0o640)
    except FileNotFoundError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        state = RateState.parse(_read_all(fd))
        if state is None:
            if not expression:
                return None
            state = RateState(expression, 0, now, now)
        count, start = state.count, state.start
        if st.st_size == 0 or now - int(st.st_mtime) > interval:
            count, start = 0, now
        check, counts = assess(domain, evaluate(state.expression), count, start, now, force)
        if counts:
            data = RateState(state.expression, count + 1, start, now).to_bytes()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        return check
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def ratecontrol_rate(lines: list[str], domain: str, channel: str,
                     regex: bool = False) -> str | None:
    """``getDomainToken()``: the rate of the first ``ratecontrol`` line whose
    pattern matches *domain* — ``domain:channel:rate`` lines for the other
    channel are skipped."""
    other = "remote" if channel == "local" else "local"
    for line in lines:
        pattern, sep, rest = line.partition(":")
        if not sep:
            continue
        if pattern != domain:
            if regex:
                try:
                    if not re.search(pattern, domain, re.IGNORECASE):
                        continue
                except re.error:
                    continue
            elif not wildmat(pattern, domain):
                continue
        if rest.startswith(other + ":"):
            continue
        if rest.startswith(channel + ":"):
            return rest[len(channel) + 1:]
        return rest
    return None


@dataclass(frozen=True)
class Definition:
    """Where a domain's rate is defined: the file holding the state (or the
    file to create from a ``ratecontrol`` expression)."""

    path: Path
    expression: str | None = None


def find_definition(directory: Path, domain: str, channel: str,
                    regex: bool = False) -> Definition | None:
    """Blocking: ``<domain>``, then ``ratecontrol``, then ``.global``."""
    own = directory / domain
    if domain and "/" not in domain and os.access(own, os.W_OK):
        return Definition(own)
    try:
        lines = (directory / RATECONTROL).read_text("utf-8", "replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        lines = []
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    expression = ratecontrol_rate(lines, domain, channel, regex) if lines else None
    if expression and domain and "/" not in domain and not domain.startswith("."):
        # the state of a ratecontrol domain is kept as if drate had made it
        return Definition(own, expression)
    glob = directory / GLOBAL
    if os.access(glob, os.W_OK):
        return Definition(glob)
    return None


def ratelimit_dir(queue_path: Path, env: Mapping[str, str]) -> Path | None:
    """``$RATELIMIT_DIR`` (empty: off), else ``<queue>/ratelimit``."""
    value = env.get("RATELIMIT_DIR")
    if value is not None:
        return Path(value) if value.strip() else None
    return Path(queue_path) / "ratelimit"


def interval_from(env: Mapping[str, str]) -> int:
    try:
        return int(env.get("RATELIMIT_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL


def domain_of(address: str) -> str:
    return address[address.rfind("@") + 1:].lower() if "@" in address else address.lower()


class FileRateLimiter:
    """Rate decisions kept in the rate files themselves (one host)."""

    def __init__(self, directory: Path, *, blocking: Callable[..., defer.Deferred],
                 interval: int = DEFAULT_INTERVAL, regex: bool = False):
        self.directory = Path(directory)
        self.interval = interval
        self.regex = regex
        self._blocking = blocking

    def active(self) -> bool:
        """Blocking: is there a rate directory at all?"""
        return self.directory.is_dir()

    def _check(self, domain: str, channel: str, now: int) -> RateCheck | None:
        found = find_definition(self.directory, domain, channel, self.regex)
        if found is None:
            return None
        shown = domain
        return check_file(found.path, shown, now, self.interval, found.expression)

    async def check(self, address: str, channel: str, now: float) -> RateCheck | None:
        """None when no rate is defined for the recipient's domain."""
        return await self._blocking(self._check, domain_of(address), channel, int(now))

    def close(self) -> None:
        pass


# KEYS[1] the domain's hash; ARGV now, interval, conf rate, force.
# Returns {counted 0|1, count before, start}; the decision mirrors assess().
REDIS_SCRIPT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local conf = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'count', 'start', 'last')
local count = tonumber(v[1])
local start = tonumber(v[2])
local last = tonumber(v[3])
if not count or not start or not last or now - last > interval then
  count = 0
  start = now
end
local rate = 0
if now ~= start then rate = count / (now - start) end
if ARGV[4] ~= '1' and conf >= 0 and (conf == 0 or rate > conf) then
  return {0, count, start}
end
redis.call('HSET', KEYS[1], 'count', count + 1, 'start', start, 'last', now)
redis.call('EXPIRE', KEYS[1], interval * 2)
return {1, count, start}
"""

REDIS_PREFIX = "indimail:ratelimit:"


def parse_redis_address(text: str) -> tuple[str, int, int | None]:
    """``host[:port][/db]`` (``redis://`` prefix allowed) → (host, port, db)."""
    text = text.strip()
    if text.startswith("redis://"):
        text = text[len("redis://"):]
    db = None
    if "/" in text:
        text, _, dbtext = text.partition("/")
        db = int(dbtext) if dbtext else None
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host or "127.0.0.1", int(port) if port else 6379, db


class RedisRateLimiter(FileRateLimiter):
    """Rate expressions from the files, counters in Redis (several hosts)."""

    def __init__(self, directory: Path, redis, *, blocking, interval: int = DEFAULT_INTERVAL,
                 regex: bool = False, prefix: str = REDIS_PREFIX):
        super().__init__(directory, blocking=blocking, interval=interval, regex=regex)
        self.redis = redis
        self.prefix = prefix

    def _expression(self, domain: str, channel: str) -> tuple[str, str] | None:
        found = find_definition(self.directory, domain, channel, self.regex)
        if found is None:
            return None
        if found.expression is not None:
            return domain, found.expression
        state = read_state(found.path)
        if state is None:
            return None
        return found.path.name, state.expression

    async def check(self, address: str, channel: str, now: float) -> RateCheck | None:
        domain = domain_of(address)
        found = await self._blocking(self._expression, domain, channel)
        if found is None:
            return None
        key, expression = found
        conf = evaluate(expression)
        now = int(now)
        reply = await self.redis.eval(REDIS_SCRIPT, keys=[self.prefix + key],
                                      args=[now, self.interval, repr(conf), "0"])
        counted, count, start = (int(x) for x in reply)
        check, _ = assess(domain, conf, count, start, now)
        if bool(counted) != check.ok:   # float edge: trust the atomic decision
            check = RateCheck(domain, bool(counted), check.count, check.rate, conf,
                              check.need if counted else max(check.need, 0))
        return check

    def close(self) -> None:
        disconnect = getattr(self.redis, "disconnect", None)
        if disconnect is not None:
            disconnect()


def make_limiter(queue_path: Path, env: Mapping[str, str], *, blocking,
                 redis_factory=None) -> FileRateLimiter | None:
    """The limiter a queue engine uses, or None when rate control is off."""
    directory = ratelimit_dir(queue_path, env)
    if directory is None:
        return None
    interval = interval_from(env)
    regex = "QREGEX" in env
    address = env.get("RATELIMIT_REDIS", "").strip()
    if address:
        host, port, db = parse_redis_address(address)
        if redis_factory is None:
            import txredisapi
            redis = txredisapi.lazyConnection(host, port, dbid=db, reconnect=True)
        else:
            redis = redis_factory(host, port, db)
        return RedisRateLimiter(directory, redis, blocking=blocking, interval=interval,
                                regex=regex)
    return FileRateLimiter(directory, blocking=blocking, interval=interval, regex=regex)
