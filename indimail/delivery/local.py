"""Local delivery: qmail-lspawn's user lookup plus qmail-local's work.

``LocalDelivery.deliver`` resolves the local part as qmail-lspawn does
(``users/cdb`` or ``users/assign``, then the system password database, then
the alias user), finds the dot-qmail file in the user's home, and runs its
lines in order: Maildir and mbox writes in worker threads, programs as child
processes, forwards re-injected through the
:class:`~indimail.queue.enqueue.Enqueuer`.
Every copy starts with ``Return-Path:`` and ``Delivered-To:`` as qmail-local
writes them; a message already carrying our ``Delivered-To:`` line is a loop.

Before that, as indimail's spawn-filter: the delivery's environment gets
``fromd.envrules``/``rcpt.envrules``; a ``FILTERARGS``/``filterargs``
filter may rewrite, discard or bounce the message; and ``QMAILLOCAL`` names
a program run instead of all of qmail-local's work, with qmail-local's
arguments.  A service running as root delivers for another uid in child
processes running as that user (:mod:`.privileges`).
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from twisted.internet.defer import DeferredLock

from indimail.config.control import ControlFileError, ControlFiles
from indimail.config.environment import Environment
from indimail.config.home import Home
from indimail.delivery import dotqmail, privileges
from indimail.delivery import filter as dfilter
from indimail.delivery.agent import DeliveryAgent, open_for_filter, split_address
from indimail.delivery.assign import ALIAS_USER, Assign, AssignEntry, GetpwError, UserResolver
from indimail.delivery.dotqmail import Instruction
from indimail.delivery.lines import dtline, rpline, ufline
from indimail.delivery.maildir import MaildirWriter
from indimail.delivery.mbox import deliver_mbox
from indimail.delivery.program import (
    ProgramOutcome, open_message, run_program, run_qmail_local)
from indimail.delivery.result import (
    DEFERRAL, FAILURE, SUCCESS, DeliveryError, DeliveryResult, permanent, temporary)
from indimail.send.batch import BatchRunner

NO_MAILBOX = "Sorry, no mailbox here by that name. (#5.1.1)"
LOOPING = "This message is looping: it already has my Delivered-To line. (#5.4.6)"
BAD_MAXDT = "Unable to read control file maxdeliveredto. (#4.3.0)"
DEFAULT_DELIVERY = "./Maildir/"
CHUNK = 65536
LOOKUP_TRIPS = 4    # lookup trips to threads at once
LOOKUP_BATCH = 8    # deliveries per trip at most


@dataclass
class Plan:
    """Everything decided before the first line of the dot-qmail file runs."""

    entry: AssignEntry
    home: Path
    local: str
    host: str
    dtline: bytes
    rpline: bytes
    ufline: bytes
    newsender: str
    instructions: list[Instruction]
    forward_only: bool
    variables: dict[str, str] = field(default_factory=dict)
    run_as: tuple[int, int] | None = None   # (uid, gid) of the child processes


@dataclass
class Start:
    """What qmail-lspawn decides, before filters and qmail-local: the
    delivery's environment, the user, and who the work runs as."""

    env: Environment
    entry: AssignEntry
    home: Path
    run_as: tuple[int, int] | None
    filter: str | None
    qmaillocal: str | None


def ext_variables(ext: str) -> dict[str, str]:
    """EXT, EXT2, EXT3, EXT4: the extension with 0..3 leading ``-`` fields cut."""
    out = {"EXT": ext}
    rest = ext
    for n in (2, 3, 4):
        cut = rest.find("-")
        rest = rest[cut + 1:] if cut >= 0 else ""
        out[f"EXT{n}"] = rest
    return out


def host_variables(host: str) -> dict[str, str]:
    """HOST2, HOST3, HOST4: the host with 1..3 trailing ``.`` fields cut."""
    out = {}
    end = len(host)
    for n in (2, 3, 4):
        dot = host.rfind(".", 0, end)
        end = dot if dot >= 0 else end
        out[f"HOST{n}"] = host[:end]
    return out


def count_delivered_to(message: os.PathLike | str, line: bytes) -> int:
    """How many header lines of the message equal *line* (blocking).  Reads
    with plain ``read`` calls only as far as the header's end (the first
    empty line); a last line without its newline ends the header unread."""
    found = 0
    partial = b""
    fd = os.open(message, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            data = os.read(fd, CHUNK)
            if not data:
                return found
            lines = (partial + data).split(b"\n")
            # a line longer than *line* can never match: keep just enough of
            # it to know that (a header of one endless line stays cheap)
            partial = lines.pop()[:len(line) + 1]
            for header in lines:
                if not header:
                    return found
                if header + b"\n" == line:
                    found += 1
    finally:
        os.close(fd)


def scan_int(text: str) -> int:
    """qmail's scan_int: optional sign, then the leading digits (none: 0)."""
    text = text.lstrip(" \t")
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in "+-":
        text = text[1:]
    digits = len(text) - len(text.lstrip("0123456789"))
    return sign * int(text[:digits]) if digits else 0


def vdelivermail_args(command: str) -> str | None:
    """The instruction of a ``vdelivermail '' <instruction>`` program line
    (the first word's basename is ``vdelivermail``); None for other programs,
    which are forked as usual."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) != 3 or os.path.basename(words[0]) not in ("vdelivermail", "vfilter"):
        return None
    return words[2]


def _find_label(steps: list[Instruction], start: int, label: str) -> int:
    """The index after the ``:label`` line following *start*; the end when
    there is none (the rest of the file is skipped)."""
    for index in range(start, len(steps)):
        if steps[index].kind == dotqmail.LABEL and steps[index].value == label:
            return index + 1
    return len(steps)


class LocalDelivery(DeliveryAgent):
    """Delivers one recipient of one queued message to a local mailbox.

    *switch_users*: deliveries for another uid run in child processes as
    that user; None (the default) means "when this process is root"."""

    channel = "local"
    program = "qmail-local"
    filters_in_run = True

    def __init__(self, home: Home, control: ControlFiles, enqueuer, *, reactor=None,
                 env: Mapping[str, str] | None = None, threadpool=None,
                 writer: MaildirWriter | None = None, clock=time.time,
                 getpwnam=pwd.getpwnam, alias_user: str = ALIAS_USER, store=None,
                 switch_users: bool | None = None):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.home = home
        self.control = control
        self.enqueuer = enqueuer
        self.reactor = reactor
        self.env = Environment(os.environ if env is None else env)
        self.threadpool = threadpool
        self.clock = clock
        self.fsync = self.env.get("USE_FSYNC", "1") not in ("", "0")
        self.writer = writer or MaildirWriter(fsync=self.fsync, clock=clock)
        # users/assign is looked at as often as the control files are
        self.assign = Assign(home.users, recheck=getattr(control, "recheck", 0.0))
        self.users = UserResolver(self.assign, getpwnam=getpwnam, alias_user=alias_user)
        self.switch_users = os.geteuid() == 0 if switch_users is None else switch_users
        self._store = store
        self._store_lock = DeferredLock()
        # lookups (and mailbox-only deliveries) of concurrent deliveries share
        # trips to a thread; a few trips at once so their fsyncs overlap
        self._lookups = BatchRunner(self._thread, self._prepare, parallel=LOOKUP_TRIPS,
                                    limit=LOOKUP_BATCH)

    def refresh(self) -> None:
        """SIGHUP: look at ``users/assign`` and its cdb again at the next delivery."""
        self.assign.refresh()

    async def _run(self, mess: Path, sender: str, recipient: str, qqeh: str) -> DeliveryResult:
        local, host = split_address(recipient)
        if not local:
            return DeliveryResult(SUCCESS, "did 0+0+0")
        start, plan = await self._lookups.submit(mess, sender, recipient, local, host, qqeh)
        if isinstance(plan, DeliveryResult):
            return plan   # the mailbox copies were written in that same thread
        filtered = None
        try:
            if start.filter is not None:
                verdict = await self._filter(start, mess, sender, recipient, qqeh)
                if verdict.status is not None:
                    return DeliveryResult(verdict.status, verdict.report)
                mess = filtered = Path(verdict.path)
            if start.qmaillocal is not None:
                return await self._qmail_local(start, mess, sender, local, host, qqeh)
            if plan is None:
                plan = await self._thread(self.plan, mess, sender, local, host, start)
            return await self._local(plan, mess, qqeh)
        finally:
            if filtered is not None:
                await self._thread(dfilter.remove, str(filtered))

    def _prepare(self, mess: Path, sender: str, recipient: str, local: str,
                 host: str, qqeh: str = "") -> tuple[Start, Plan | DeliveryResult | None]:
        """:meth:`start`, and the :meth:`plan` too when neither a filter nor
        QMAILLOCAL comes first: one trip to a worker thread (blocking).  A
        plan of nothing but Maildir/mbox lines for this process's own uid
        is carried out right here too (the common case: one thread trip per
        delivery); its DeliveryResult comes back instead of the plan."""
        start = self.start(sender, recipient, local, host)
        if start.filter is not None or start.qmaillocal is not None:
            return start, None
        plan = self.plan(mess, sender, local, host, start)
        if _files_only(plan):
            return start, self._files_now(plan, mess, qqeh)
        return start, plan

    def _files_now(self, plan: Plan, mess: Path, qqeh: str) -> DeliveryResult:
        """Blocking: the Maildir and mbox lines of a :func:`_files_only`
        plan, in order; the result :meth:`_local` would report."""
        prefix = plan.rpline + plan.dtline + qqeh.encode("utf-8", "surrogateescape")
        files = 0
        for step in plan.instructions:
            if step.kind == dotqmail.MAILDIR:
                self.writer.deliver(self._path(plan.home, step.value), prefix, mess)
            elif step.kind == dotqmail.MBOX:
                deliver_mbox(self._path(plan.home, step.value), plan.ufline, prefix, mess,
                             self.fsync)
            else:
                continue
            files += 1
        return DeliveryResult(SUCCESS, f"did {files}+0+0")

    async def _local(self, plan: Plan, mess: Path, qqeh: str) -> DeliveryResult:
        """qmail-local's work: the dot-qmail lines, in order."""
        prefix = plan.rpline + plan.dtline + qqeh.encode("utf-8", "surrogateescape")
        counts = {"file": 0, "forward": 0, "program": 0}
        outputs: list[str] = []
        forwards: list[str] = []
        forward_only = plan.forward_only
        steps = plan.instructions
        index = 0
        while index < len(steps):
            step = steps[index]
            index += 1
            if step.kind == dotqmail.LIST:
                forward_only = True
            elif step.kind in (dotqmail.MAILDIR, dotqmail.MBOX):
                counts["file"] += 1
                if forward_only:
                    raise temporary("Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)")
                await self._file(plan, step.kind, self._path(plan.home, step.value), prefix, mess)
            elif step.kind == dotqmail.BRANCH:
                jump = True
                if step.value:
                    counts["program"] += 1
                    if forward_only:
                        raise temporary(
                            "Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)")
                    outcome = await self._program(plan, step.value, mess, qqeh)
                    if outcome.output:
                        outputs.append(outcome.output)
                    if outcome.status != SUCCESS:
                        raise DeliveryError(outcome.status, "\n".join(outputs))
                    jump = outcome.stop
                if jump:
                    index = _find_label(steps, index, step.label)
            elif step.kind == dotqmail.PROGRAM:
                counts["program"] += 1
                if forward_only:
                    raise temporary("Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)")
                vargs = vdelivermail_args(step.value)
                if vargs is not None:
                    outcome = await self._vdelivermail(
                        plan, vargs, mess, qqeh, vfilter=os.path.basename(shlex.split(step.value)[0]) == "vfilter")
                else:
                    outcome = await self._program(plan, step.value, mess, qqeh)
                if outcome.output:
                    outputs.append(outcome.output)
                if outcome.status != SUCCESS:
                    raise DeliveryError(outcome.status, "\n".join(outputs))
                if outcome.stop:
                    break
            elif step.kind == dotqmail.FORWARD:
                counts["forward"] += 1
                forwards.append(step.value)
        report = outputs + ["did %(file)d+%(forward)d+%(program)d" % counts]
        if forwards:
            qp = await self._forward(plan, mess, qqeh, forwards)
            report.append(f"qp {qp}")
        return DeliveryResult(SUCCESS, "\n".join(report))

    @staticmethod
    def _path(home: Path, line: str) -> Path:
        return Path(line) if line.startswith("/") else home / line

    # -- the part that reads files: runs in a worker thread ---------------

    def start(self, sender: str, recipient: str, local: str, host: str) -> Start:
        """qmail-lspawn's part (blocking): the envrules, the user, the uid
        the work runs as, the filter and ``QMAILLOCAL``."""
        env = self.delivery_env(sender, recipient)
        entry, home = self.resolve(local)
        run_as = None
        if self.switch_users and privileges.switch_needed(entry.uid, entry.gid):
            run_as = (entry.uid, entry.gid)
        command = dfilter.filter_command(env, self.control, host, dfilter.LOCAL)
        qmaillocal = env.get("QMAILLOCAL") or None
        return Start(env, entry, home, run_as, command, qmaillocal)

    def resolve(self, local: str) -> tuple[AssignEntry, Path]:
        """The user of *local* and the absolute home (blocking)."""
        try:
            entry = self.users.lookup(local)
        except GetpwError as exc:
            raise temporary(str(exc)) from None
        if entry is None:
            # no alias user at all: qmail-lspawn defers ("Unable to find alias
            # user!"); here the address simply does not exist (decisions.md)
            raise permanent(NO_MAILBOX)
        home = Path(entry.home)
        if not home.is_absolute():
            home = self.home.path / home
        return entry, home

    def plan(self, mess: Path, sender: str, local: str, host: str,
             start: Start | None = None) -> Plan:
        """The first half of qmail-local (blocking)."""
        if start is None:
            start = self.start(sender, f"{local}@{host}", local, host)
        entry, home = start.entry, start.home
        self._check_home(home)
        dt = dtline(local, host)
        maxdt = self.max_delivered_to()
        try:
            found = count_delivered_to(mess, dt)
        except OSError as exc:
            raise temporary(f"Unable to read message: {os.strerror(exc.errno)}. (#4.3.0)") from None
        if maxdt > -1 and found > maxdt:
            raise permanent(LOOPING)
        found_qmail = dotqmail.find_dotqmail(home, entry.dash, entry.ext, start.run_as)
        if found_qmail is None and entry.dash:
            raise permanent(NO_MAILBOX)
        newsender = self._newsender(home, entry, sender, local, host)
        content = found_qmail.content if found_qmail else b""
        forward_only = found_qmail.forward_only if found_qmail else False
        if not content:
            content = self._default_delivery().encode("utf-8", "surrogateescape")
            forward_only = False
        instructions = dotqmail.parse(content.decode("utf-8", "surrogateescape"))
        now = self.clock()
        plan = Plan(entry, home, local, host, dt, rpline(sender), ufline(sender, now),
                    newsender, instructions, forward_only, run_as=start.run_as)
        plan.variables = self._variables(plan, sender, found_qmail, start.env)
        return plan

    def max_delivered_to(self) -> int:
        """qmail-local's bouncexf(): how many of our Delivered-To lines a
        message may already carry; 0 (default) = none, -1 = no loop check."""
        try:
            text = self.control.value("maxdeliveredto")
        except (ControlFileError, OSError):
            raise temporary(BAD_MAXDT) from None
        return scan_int(text) if text is not None else 0

    @staticmethod
    def _check_home(home: Path) -> None:
        try:
            st = os.stat(home)
        except OSError as exc:
            raise temporary(
                f"Unable to switch to {home}: {os.strerror(exc.errno)}. (#4.3.0)") from None
        if not stat.S_ISDIR(st.st_mode):
            raise temporary(f"Unable to switch to {home}: not a directory. (#4.3.0)")
        if st.st_mode & dotqmail.WRITABLE:
            raise temporary("Uh-oh: home directory is writable. (#4.7.0)")
        if st.st_mode & stat.S_ISVTX:
            raise temporary("Home directory is sticky: user is editing his .qmail file. (#4.2.1)")

    @staticmethod
    def _newsender(home: Path, entry: AssignEntry, sender: str, local: str, host: str) -> str:
        """qmail-local's NEWSENDER: the sender, unless an ``-owner`` file exists."""
        if not sender or sender == "#@[]":
            return sender
        base = ".qmail" + entry.dash + dotqmail.safe_ext(entry.ext)
        if not dotqmail.exists(home, base + "-owner"):
            return sender
        if dotqmail.exists(home, base + "-owner-default"):
            return f"{local}-owner-@{host}-@[]"
        return f"{local}-owner@{host}"

    def _default_delivery(self) -> str:
        lines = self.control.lines("defaultdelivery")
        return "\n".join(lines) + "\n" if lines else DEFAULT_DELIVERY + "\n"

    def _variables(self, plan: Plan, sender: str, found,
                   base: Mapping[str, str] | None = None) -> dict[str, str]:
        entry = plan.entry
        dec = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
        env = dict(self.env if base is None else base)
        env.pop("SPAMFILTER", None)
        env.update({
            "HOST": plan.host, "HOME": str(plan.home), "USER": entry.user,
            "LOCAL": plan.local, "RECIPIENT": f"{plan.local}@{plan.host}",
            "DTLINE": dec(plan.dtline), "SENDER": sender, "RPLINE": dec(plan.rpline),
            "UFLINE": dec(plan.ufline), "NEWSENDER": plan.newsender,
        })
        env.update(ext_variables(entry.ext))
        env.update(host_variables(plan.host))
        if found is not None and found.default is not None:
            env["DEFAULT"] = found.default
        return env

    # -- vdelivermail in-process ----------------------------------------------

    async def _vdelivermail(self, plan: Plan, instruction: str, mess: Path, qqeh: str,
                            vfilter: bool = False):
        """Run vdelivermail's work here instead of forking it (one store per
        LocalDelivery, opened on first use)."""
        from indimail.vdomain.vdelivermail import Request, VDeliverMail, result_code
        store = await self._vstore()
        engine = VDeliverMail(
            store, thread=self._thread, writer=self.writer, clock=self.clock,
            forward=lambda recipients: self._forward(plan, mess, qqeh, recipients),
            program=lambda command: self._program(plan, command, mess, qqeh),
            relay=lambda route, recipient: self._relay(route, mess, plan, recipient, qqeh))
        request = Request(mess, plan.variables.get("SENDER", ""), plan.variables.get("EXT", ""),
                          plan.host, instruction,
                          plan.rpline + plan.dtline + qqeh.encode("utf-8", "surrogateescape"),
                          env=plan.variables, vfilter=vfilter)
        result = await engine.deliver(request)
        return ProgramOutcome(result.status, False, result.report, result_code(result))

    def _relay(self, route: str, mess: Path, plan: Plan, recipient: str, qqeh: str):
        """qmail-remote to *recipient* with ``SMTPROUTE=route`` (a cluster peer)."""
        from indimail.delivery.remote import RemoteDelivery
        remote = RemoteDelivery(self.home, self.control, reactor=self.reactor,
                                env=dict(self.env.apply([("SMTPROUTE", route)])),
                                threadpool=self.threadpool)
        return remote.deliver(_OneMessage(mess), 0, plan.variables.get("SENDER", ""),
                              recipient, qqeh)

    async def _vstore(self):
        if self._store is not None:
            return self._store
        await self._store_lock.acquire()
        try:
            if self._store is None:
                from indimail.vdomain.store import open_store
                self._store = await open_store(self.home, self.env, reactor=self.reactor)
        except Exception as exc:
            self.log.failure("opening the user database")
            raise temporary(f"vdelivermail: unable to open the database: {exc}. (#4.3.0)"
                            ) from None
        finally:
            self._store_lock.release()
        return self._store

    # -- programs and forwards ---------------------------------------------

    async def _program(self, plan: Plan, command: str, mess: Path, qqeh: str):
        try:
            fd = await self._thread(open_message, mess)
        except OSError as exc:
            raise temporary(f"Unable to read message: {os.strerror(exc.errno)}. (#4.3.0)") from None
        env = dict(plan.variables)
        env["QQEH"] = qqeh
        env.setdefault("INDIMAIL_HOME", str(self.home.path))   # so programs find the home
        uid, gid = plan.run_as or (None, None)
        try:
            return await run_program(self.reactor, command, env, str(plan.home), fd, uid, gid)
        except OSError as exc:
            raise temporary(f"Unable to run /bin/sh: {os.strerror(exc.errno)}. (#4.3.0)") from None
        finally:
            os.close(fd)

    async def _file(self, plan: Plan, kind: str, target: Path, prefix: bytes, mess: Path):
        """One Maildir or mbox copy: in a worker thread, or in a child
        running as the user when the delivery needs another uid."""
        if plan.run_as is None:
            if kind == dotqmail.MAILDIR:
                await self._thread(self.writer.deliver, target, prefix, mess)
            else:
                await self._thread(deliver_mbox, target, plan.ufline, prefix, mess, self.fsync)
            return
        uid, gid = plan.run_as
        argv = privileges.file_delivery_argv(
            "maildir" if kind == dotqmail.MAILDIR else "mbox", uid, gid, target, prefix,
            hostname=self.writer.hostname, fsync=self.fsync, ufline=plan.ufline)
        outcome = await self._child(argv[0], argv, privileges.file_delivery_env(),
                                    str(plan.home), mess)
        if outcome.status != SUCCESS:
            raise DeliveryError(outcome.status, outcome.output
                                or "Temporary error on maildir delivery. (#4.3.0)")

    async def _child(self, executable: str, args: list[str], env: Mapping[str, str],
                     cwd: str, mess: Path, uid: int | None = None, gid: int | None = None,
                     cannot: str = "Unable to run qmail-local."):
        """Run a child with the message on stdin; its exit code is read like
        qmail-local's (``run_qmail_local``)."""
        try:
            fd = await self._thread(open_message, mess)
        except OSError as exc:
            raise temporary(f"Unable to read message: {os.strerror(exc.errno)}. (#4.3.0)") from None
        try:
            return await run_qmail_local(self.reactor, executable, args, env, cwd, fd, uid, gid)
        except OSError:
            raise temporary(cannot) from None
        finally:
            os.close(fd)

    # -- spawn-filter's part: filters and QMAILLOCAL ------------------------

    async def _filter(self, start: Start, mess: Path, sender: str, recipient: str, qqeh: str):
        """Run the delivery's filter (as the user when switching); the
        verdict says whether to go on with its output."""
        env = dfilter.filter_environment(start.env, split_address(recipient)[1],
                                         start.entry.ext, qqeh, sender, recipient)
        src, out, path = await self._thread(open_for_filter, mess, env)
        uid, gid = start.run_as or (None, None)
        try:
            verdict = await dfilter.run_filter(self.reactor, start.filter, src, out, path, env,
                                               str(self.home.path), uid=uid, gid=gid)
        except BaseException:
            await self._thread(dfilter.remove, path)
            raise
        finally:
            os.close(src)
            os.close(out)
        if verdict.status is not None:
            await self._thread(dfilter.remove, path)
        return verdict

    async def _qmail_local(self, start: Start, mess: Path, sender: str, local: str, host: str,
                           qqeh: str) -> DeliveryResult:
        """``QMAILLOCAL``: the program runs in qmail-local's place with its
        arguments ``-- user homedir local dash ext domain sender
        defaultdelivery qqeh``, the message on stdin, in the home directory
        of the installation (qmail-lspawn's ``auto_qmail``)."""
        program = start.qmaillocal
        usable = await self._thread(_executable, program, str(self.home.path))
        if not usable:
            # upstream bounces (QLX_EXECHARD); a typo must not bounce mail
            raise temporary("Unable to run qmail-local.")
        entry = start.entry
        default = (await self._thread(self._default_delivery)).rstrip("\n")
        args = ["qmail-local", "--", entry.user, str(start.home), local, entry.dash,
                entry.ext, host, sender, default, qqeh]
        env = {k: v for k, v in start.env.items() if k != "QMAILREMOTE"}
        uid, gid = start.run_as or (None, None)
        outcome = await self._child(program, args, env, str(self.home.path), mess, uid, gid)
        return DeliveryResult(outcome.status, outcome.output)

    async def _forward(self, plan: Plan, mess: Path, qqeh: str, recipients: list[str]) -> int:
        """Re-inject the message (our Delivered-To line first) to *recipients*."""
        message = self.enqueuer.begin(invoked="alias")
        try:
            message.write(plan.dtline + qqeh.encode("utf-8", "surrogateescape"))
            source = await self._thread(open, mess, "rb")
            try:
                while True:
                    chunk = await self._thread(source.read, CHUNK)
                    if not chunk:
                        break
                    message.write(chunk)
                    drained = getattr(message, "wait_for_drain", None)
                    if drained is not None:
                        await drained()
            finally:
                source.close()
        except OSError as exc:
            await message.abort()
            raise temporary(f"Unable to read message: {os.strerror(exc.errno)}. (#4.3.0)") from None
        try:
            # qmail-local also hands QQEH to qmail-queue for the forwarded copy
            return await message.finish(plan.newsender, recipients, qqeh or None)
        except Exception as exc:
            text = getattr(exc, "text", None) or str(exc)
            status = DEFERRAL if getattr(exc, "temporary", True) else FAILURE
            raise DeliveryError(status, f"Unable to forward message: {text}.") from None


class _OneMessage:
    """The queue interface RemoteDelivery reads one message file through."""

    def __init__(self, path: Path):
        self.path = path

    def mess(self, _msgid: int) -> Path:
        return self.path


def _files_only(plan: Plan) -> bool:
    """Whether *plan* only writes mailbox files as this process (no
    program, forward or branch, no ``+list``, no other uid)."""
    return (plan.run_as is None and not plan.forward_only
            and all(s.kind in _FILE_KINDS for s in plan.instructions))


_FILE_KINDS = frozenset({dotqmail.MAILDIR, dotqmail.MBOX, dotqmail.LABEL})


def _executable(program: str, cwd: str) -> bool:
    """Whether *program* (relative to *cwd*) is a file we may execute."""
    path = os.path.join(cwd, program)
    return os.path.isfile(path) and os.access(path, os.X_OK)
