"""CHECKRECIPIENT: does a recipient of one of our domains exist?

qmail-smtpd's recipient check, as a recipient-check object with an async
``check`` the SMTP rcpt plugin calls.  ``CHECKRECIPIENT`` picks the source:

1. the virtual-domain store (users, alias domains, valias; a domain in
   ``control/locals`` is checked against the system's passwd);
2. the ``recipients`` extension, then the store as in 1;
3. the ``recipients`` extension only (also the value for an empty
   ``CHECKRECIPIENT`` and when there is no store).

Only recipients in rcpthosts are checked, and when ``control/chkrcptdomains``
exists only those whose ``@domain`` (or full address) it lists.  An unknown
recipient costs 5 seconds (on the injected clock) and counts against
``MAX_RCPT_ERRCOUNT``; at that count the next RCPT of the transaction is
answered 421 and the connection closed.

The ``recipients`` control file (s/qmail's extension, see
:class:`RecipientRules`) lists cdb files of ``:address`` keys (fastforward's
layout, paths relative to the home as upstream's are to /etc/indimail) and
checkpassword-style programs given ``address\\0\\0\\0`` on descriptor 3.
"""

from __future__ import annotations

import os
import pwd
import shutil
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import cdblib
from twisted.internet import defer, error, protocol, task, threads
from twisted.python.failure import Failure

from indimail.config.control import ControlFiles
from indimail.fastlog import Logger
from indimail.plugins.api import CONTINUE, Result, denysoft, deny, disconnect
from indimail.policy.rcpthosts import RelayPolicy

from . import flags
from .store import VStore, deferred

log = Logger()

# user_status / inlookup's USER_QUERY answers
FOUND, ABSENT, INACTIVE, OVERQUOTA = 0, 1, 2, 3
STATUS_TEXT = {ABSENT: "is absent on this domain (#5.1.1)",
               INACTIVE: "is inactive on this domain (#5.2.1)",
               OVERQUOTA: "is overquota on this domain (#5.2.2)"}

# recipients() answers (upstream recipients.c)
R_NOT_FOUND, R_CDB, R_PROGRAM, R_WILDCARD, R_PASSTHROUGH, R_NO_FILE = 0, 1, 2, 3, 4, 10
R_TEMPFAIL = 111
R_TEXT = {R_CDB: "user found in cdb", R_PROGRAM: "user found through PAVM",
          R_WILDCARD: "user matched through wildcard",
          R_PASSTHROUGH: "user matched through pass through"}

PENALTY = 5.0                 # seconds per unknown recipient, as qmail-smtpd
PROGRAM_TIMEOUT = 60.0
BREAK_CHARS = "-=+"           # auto_break and the SRS/VERP separators
ERRCOUNT_NOTE = "rcpt_errcount"

DB_ERROR = "Sorry, I got a temporary database error (#4.3.2)"
RECIPIENTS_ERROR = "unable to check recipients (#4.3.2)"
TOO_MANY_TEXT = "too many invalid addresses, goodbye (#4.7.1)"


class RecipientsTempFail(Exception):
    """A recipients source could not answer (a program crashed, exited 111, ...)."""


# -- the recipients control file -------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One line of ``control/recipients``.

    *kind*: ``accept`` (``!domain``), ``passthrough`` (``!*``), ``cdb`` or
    ``program``; *scope*: ``exact`` (``@domain``), ``domain`` (the domain
    and its sub-domains), ``any`` (``*``) or ``all`` (a bare cdb path)."""

    kind: str
    scope: str
    domain: str = ""
    target: str = ""

    def matches(self, domain: str) -> bool:
        if self.scope in ("any", "all"):
            return True
        if self.scope == "exact":
            return domain == self.domain
        return domain == self.domain or domain.endswith("." + self.domain)


def parse_rules(lines: list[str]) -> list[Rule]:
    """The rules of ``control/recipients``, in order."""
    rules = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("!"):
            rest = line[1:].strip().lower()
            rules.append(Rule("passthrough", "any") if rest == "*"
                         else Rule("accept", "exact", rest))
            continue
        colon, bar = line.find(":"), line.find("|")
        cuts = [i for i in (colon, bar) if i > 0]
        if not cuts:
            rules.append(Rule("cdb", "all", "", line))
            continue
        cut = min(cuts)
        kind = "program" if cut == bar else "cdb"
        left, target = line[:cut].strip().lower(), line[cut + 1:].strip()
        if left == "*":
            rules.append(Rule(kind, "any", "", target))
        elif left.startswith("@"):
            rules.append(Rule(kind, "exact", left[1:], target))
        else:
            rules.append(Rule(kind, "domain", left, target))
    return rules


def recipient_keys(address: str) -> list[bytes]:
    """The cdb keys of *address*: ``:address`` and, for an extension or SRS
    address, ``:local-@domain`` (everything up to the first separator)."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, "localhost"
    full = f"{local}@{domain}".lower()
    keys = [b":" + full.encode("utf-8", "surrogateescape")]
    for i, ch in enumerate(local):
        if ch in BREAK_CHARS:
            verp = f"{local[:i + 1]}@{domain}".lower()
            keys.append(b":" + verp.encode("utf-8", "surrogateescape"))
            break
    return keys


def _cdb_has(path: Path, keys: list[bytes]) -> bool:
    """Blocking: whether the cdb at *path* has one of *keys* (missing file: no)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    try:
        reader = cdblib.Reader(data)
    except Exception:
        log.warn("recipients: {path} is not a cdb file", path=str(path))
        return False
    return any(reader.get(k) is not None for k in keys)


class _FeedFd3(protocol.ProcessProtocol):
    def __init__(self, data: bytes, done: defer.Deferred):
        self.data = data
        self.done = done

    def connectionMade(self):
        self.transport.writeToChild(3, self.data)
        self.transport.closeChildFD(3)
        self.transport.closeStdin()

    def childDataReceived(self, fd, data):
        pass

    def processEnded(self, reason):
        value = reason.value
        self.done.callback((getattr(value, "exitCode", None), getattr(value, "signal", None)))


class RecipientRules:
    """``control/recipients`` over one home: cdb files and programs."""

    def __init__(self, control: ControlFiles, base: Path, reactor,
                 timeout: float = PROGRAM_TIMEOUT):
        self.control = control
        self.base = Path(base)
        self.reactor = reactor
        self.timeout = timeout

    def rules(self) -> list[Rule] | None:
        """The parsed rules; None when the file does not exist."""
        if not self.control.exists("recipients"):
            return None
        return parse_rules(self.control.lines("recipients"))

    def _path(self, target: str) -> Path:
        path = Path(target)
        return path if path.is_absolute() else self.base / path

    @deferred
    async def lookup(self, address: str) -> int:
        """upstream ``recipients()``: R_NOT_FOUND, R_CDB, R_PROGRAM, R_WILDCARD,
        R_PASSTHROUGH or R_NO_FILE; RecipientsTempFail when a program fails."""
        rules = await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                                self.rules)
        if rules is None:
            return R_NO_FILE
        domain = address.rpartition("@")[2].lower() if "@" in address else "localhost"
        keys = recipient_keys(address)
        for rule in rules:
            if rule.kind == "passthrough":
                return R_PASSTHROUGH
            if not rule.matches(domain):
                continue
            if rule.kind == "accept":
                return R_WILDCARD
            if rule.kind == "cdb":
                if await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                                   _cdb_has, self._path(rule.target), keys):
                    return R_CDB
            elif rule.kind == "program":
                for candidate in _addresses(address, keys):
                    if await self.run_program(rule.target, candidate) == 0:
                        return R_PROGRAM
        return R_NOT_FOUND

    async def run_program(self, command: str, address: str) -> int:
        """Run a recipients program with ``address\\0\\0\\0`` on fd 3; its exit code."""
        argv = shlex.split(command)[:6]
        if not argv:
            return 1
        program = argv[0]
        if "/" in program:
            program = str(self._path(program))
        else:
            program = shutil.which(program) or program
        done: defer.Deferred = defer.Deferred()
        try:
            process = self.reactor.spawnProcess(
                _FeedFd3(address.encode("utf-8", "surrogateescape") + b"\0\0\0", done),
                program, argv, env=dict(os.environ), path=str(self.base),
                childFDs={0: "w", 1: "r", 2: "r", 3: "w"})
        except OSError as exc:
            raise RecipientsTempFail(f"cannot run {program}: {exc}") from exc
        timer = self.reactor.callLater(self.timeout, _kill, process)
        try:
            code, sig = await done
        finally:
            if timer.active():
                timer.cancel()
        if sig is not None or code is None or code == 111:
            raise RecipientsTempFail(f"{program} exit {code} signal {sig}")
        return code


def _addresses(address: str, keys: list[bytes]) -> list[str]:
    """The address and its extension form, as the programs are asked."""
    out = [address]
    if len(keys) > 1:
        out.append(keys[1][1:].decode("utf-8", "surrogateescape"))
    return out


def _kill(process) -> None:
    try:
        process.signalProcess("KILL")
    except error.ProcessExitedAlready:
        pass


# -- the store and the system's users --------------------------------------------

async def user_status(store, address: str) -> int:
    """inlookup's USER_QUERY: FOUND (also for a valias), ABSENT, INACTIVE, OVERQUOTA
    (the BOUNCE_MAIL flag).  Database errors propagate."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return ABSENT
    user = await store.find(address)
    if user is None:
        return await _valias_status(store, local, domain)
    return _status_of(user)


async def _valias_status(store, local: str, domain: str) -> int:
    """FOUND when *local* is a valias of *domain* (or of the domain it aliases)."""
    real = await store.real_domain(domain) or domain.lower()
    return FOUND if await store.alias_lines(local, real) else ABSENT


def user_status_now(store: VStore, address: str) -> defer.Deferred:
    """:func:`user_status` as one callback on the store's coalesced read
    when the user is there (the usual case); a missing user goes on as
    :func:`user_status` (alias domains, valias)."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return defer.succeed(ABSENT)
    read = defer.ensureDeferred(store._read_user(local, domain))
    return read.addCallback(_status_or_search, store, local, domain)


def _status_or_search(user, store: VStore, local: str, domain: str):
    if user is None:   # go on from the miss: alias domains, then valias
        return defer.Deferred.fromCoroutine(_status_after_miss(store, local, domain))
    return _status_of(user)


async def _status_after_miss(store: VStore, local: str, domain: str) -> int:
    user = await store.find_in_alias_domain(local, domain)
    if user is None:
        return await _valias_status(store, local, domain)
    return _status_of(user)


def _status_of(user) -> int:
    if user.inactive:
        return INACTIVE
    if user.has(flags.BOUNCE_MAIL):
        return OVERQUOTA
    return FOUND


def passwd_status(address: str) -> int:
    """Blocking: FOUND when the local part is a user of the system passwd."""
    try:
        pwd.getpwnam(address.rpartition("@")[0] or address)
    except KeyError:
        return ABSENT
    return FOUND


# -- the check ------------------------------------------------------------------

@dataclass(frozen=True)
class Lookup:
    """Where an address was looked for and what was found."""

    status: int            # FOUND, ABSENT, INACTIVE, OVERQUOTA
    source: str            # "recipients", "sql", "passwd"
    detail: int = 0        # the recipients() answer when the extension decided


def check_mode(env: Mapping[str, str], has_store: bool) -> int | None:
    """CHECKRECIPIENT as a mode (1, 2, 3), None when unset."""
    value = env.get("CHECKRECIPIENT")
    if value is None:
        return None
    if not has_store or not value.strip():
        return 3
    try:
        mode = int(value.strip())
    except ValueError:
        return 3
    return mode if mode in (1, 2, 3) else 3


def max_errcount(env: Mapping[str, str]) -> int | None:
    """MAX_RCPT_ERRCOUNT: None when unset; a non-number counts as 1 (upstream)."""
    value = env.get("MAX_RCPT_ERRCOUNT")
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return 1


class RecipientCheck:
    """qmail-smtpd's CHECKRECIPIENT for one service.

    *control* is the service's ControlFiles, *home* its
    :class:`~indimail.config.home.Home` (cdb paths and programs of the
    recipients file are relative to it), *store* an opened VStore, a
    callable returning a Deferred of one (e.g. ``lambda:
    credchecker.shared_store(home, env, reactor)``), or None (no store),
    *in_rcpthosts* a callable ``address -> bool`` (default: the rcpthosts
    plugin's test over *control*), *clock* the clock the 5-second penalty
    is waited on."""

    def __init__(self, control: ControlFiles, home, store=None, *, reactor=None,
                 clock=None, in_rcpthosts=None, penalty: float = PENALTY):
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.control = control
        self.home = home
        self.store = store
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.penalty = penalty
        if in_rcpthosts is None:
            in_rcpthosts = RelayPolicy(control).in_rcpthosts
        self.in_rcpthosts = in_rcpthosts
        self.rules = RecipientRules(control, Path(home.path), reactor)

    def _thread(self, fn, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def applies(self, address: str) -> bool:
        """Blocking (cached control reads): whether chkrcptdomains lets *address* be checked."""
        listed = self.control.keys("chkrcptdomains")
        if listed is None:
            return True
        domain = address.rpartition("@")[2].lower()
        return address.lower() in listed or ("@" + domain) in listed

    def _is_locals(self, address: str) -> bool:
        domain = address.rpartition("@")[2].lower()
        return domain in (self.control.keys("locals") or ())

    async def _control(self, fn, *args):
        """*fn* reading control files: inline on a rechecking ControlFiles
        (the service's: a dict lookup, a stat at most once a second), in a
        thread otherwise."""
        if getattr(self.control, "recheck", 0):
            return fn(*args)
        return await self._thread(fn, *args)

    async def _sql_or_passwd(self, address: str) -> Lookup:
        if await self._control(self._is_locals, address):
            return Lookup(await self._thread(passwd_status, address), "passwd")
        return Lookup(await user_status(await self._store(), address), "sql")

    async def _store(self):
        if callable(self.store) and not hasattr(self.store, "lookup"):
            self.store = await self.store()
        return self.store

    async def find(self, mode: int, address: str) -> Lookup:
        """Look *address* up the way CHECKRECIPIENT *mode* says (no penalty,
        no counting).  Database errors and RecipientsTempFail propagate."""
        if mode in (2, 3):
            found = await self.rules.lookup(address)
            if found not in (R_NOT_FOUND, R_NO_FILE):
                return Lookup(FOUND, "recipients", found)
            if mode == 3:
                return Lookup(ABSENT, "recipients", found)
        return await self._sql_or_passwd(address)

    lookup = deferred(find)
    lookup.__doc__ = """:meth:`find` as a Deferred."""

    async def verdict(self, env: Mapping[str, str], address: str, *, sender: str = "",
                      notes: dict | None = None, local: bool | None = None) -> Result:
        """The verdict for ``RCPT TO:<address>``.

        *notes* is the transaction's notes (the unknown-recipient count lives
        there, so a new MAIL starts from 0); *local* says whether the address
        is in rcpthosts (asked of *in_rcpthosts* when None).  CONTINUE lets
        the other rcpt plugins decide; DENY carries upstream's 550 text,
        DISCONNECT the 421 of MAX_RCPT_ERRCOUNT, DENYSOFT a 451 when a source
        could not answer."""
        notes = notes if notes is not None else {}
        over = _over_limit(env, notes, sender)
        if over is not None:
            return over
        mode = check_mode(env, self.store is not None)
        if mode is None or "@" not in address:
            return CONTINUE
        if local is None:
            local = await self._control(self.in_rcpthosts, address)
        if not local or not await self._control(self.applies, address):
            return CONTINUE
        try:
            found = await self.find(mode, address)
        except Exception:
            return _lookup_failed(Failure())
        judged = self._judge(found.status, address, sender, notes)
        return (await judged) if isinstance(judged, defer.Deferred) else judged

    def verdict_now(self, env: Mapping[str, str], address: str, *, sender: str = "",
                    notes: dict | None = None) -> Result | defer.Deferred:
        """:meth:`verdict` without its coroutine in the usual case: the
        service's rechecking control files, an opened store and
        ``CHECKRECIPIENT=1`` for a domain not in ``locals``.  Then the answer
        is CONTINUE or a Result at once, or one Deferred on the store's
        (coalesced) read of the user; anything else is :meth:`verdict`'s
        coroutine.  Under load every RCPT runs this."""
        store = self.store
        if (not getattr(self.control, "recheck", 0) or not isinstance(store, VStore)
                or check_mode(env, True) != 1):
            return self.verdict(env, address, sender=sender, notes=notes)
        notes = notes if notes is not None else {}
        over = _over_limit(env, notes, sender)
        if over is not None:
            return over
        if "@" not in address or not self.in_rcpthosts(address) or not self.applies(address):
            return CONTINUE
        if self._is_locals(address):
            return self.verdict(env, address, sender=sender, notes=notes, local=True)
        return user_status_now(store, address).addCallbacks(
            self._judge, _lookup_failed, callbackArgs=(address, sender, notes))

    def check(self, env: Mapping[str, str], address: str, **kw) -> defer.Deferred:
        """:meth:`verdict_now` as a Deferred."""
        result = self.verdict_now(env, address, **kw)
        if isinstance(result, defer.Deferred):
            return result
        if isinstance(result, Result):
            return defer.succeed(result)
        return defer.Deferred.fromCoroutine(result)

    def _judge(self, status: int, address: str, sender: str,
               notes: dict) -> Result | defer.Deferred:
        """CONTINUE for a found recipient; else count it against
        MAX_RCPT_ERRCOUNT and refuse it with upstream's 550, after the
        penalty."""
        if status == FOUND:
            return CONTINUE
        notes[ERRCOUNT_NOTE] = notes.get(ERRCOUNT_NOTE, 0) + 1
        if self.penalty > 0:   # make harvesting addresses slow
            return task.deferLater(self.clock, self.penalty, _refusal, status, address, sender)
        return _refusal(status, address, sender)


def _over_limit(env: Mapping[str, str], notes: dict, sender: str) -> Result | None:
    """The 421 once the transaction has had MAX_RCPT_ERRCOUNT unknown recipients."""
    limit = max_errcount(env)
    count = notes.get(ERRCOUNT_NOTE, 0)
    if limit is not None and count > 0 and count >= limit:
        log.info("Too many Invalid RECIPIENTS ({count}): MAIL from <{sender}>",
                 count=count, sender=sender)
        return disconnect(TOO_MANY_TEXT, 421)
    return None


def _refusal(status: int, address: str, sender: str) -> Result:
    state = STATUS_TEXT[status]
    log.info("Invalid RECIPIENT address: MAIL from <{sender}> RCPT <{rcpt}> state <{state}>",
             sender=sender, rcpt=address, state=state)
    return deny(f"sorry, {sender} mailbox <{address}> {state}", 550)


def _lookup_failed(failure: Failure) -> Result:
    """A source that could not answer: 451, never 550."""
    if failure.check(RecipientsTempFail):
        log.error("recipients database error: {err}", err=failure.value)
        return denysoft(RECIPIENTS_ERROR, 451)
    log.failure("sql database error", failure)
    return denysoft(DB_ERROR, 451)
