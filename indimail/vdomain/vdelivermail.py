"""vdelivermail: the MDA of virtual domains (upstream ``vdelivermail.c``).

A domain's ``.qmail-default`` runs ``vdelivermail '' <instruction>``; the
user is ``$EXT`` (``postmaster`` when empty) at ``$HOST``.  The user is looked
up in the store (the domain may be an alias domain); a user with valias lines
(or a ``.qmail`` in its directory) gets those lines, otherwise the message goes
to ``<pw_dir>/Maildir/`` under the Maildir++ quota of ``pw_shell``.  A user
not in the local database whose hostcntrl host is another mail store is
relayed there (cluster routing).  An unknown
or inactive user gets the instruction: ``delete``, ``bounce-no-mailbox``, a
Maildir path, an address to forward to, or ``domain:ip:port`` (relay over
SMTP to a peer, as qmail-remote with that ``SMTPROUTE``).  Over quota the
mail bounces, or waits when ``Maildir/holdoverquota`` exists.  ``ELIMINATE_DUPS`` drops a copy
whose header (less Received/Delivered-To) was delivered within
``DUPLICATE_INTERVAL`` seconds (ismaildup).  Run as ``vfilter`` (the
``vfilter`` flag of the request) the rules of the vfilter table are applied
first.  After a delivery ``QUOTAWARNn`` may warn the user; over quota the
userquota row and the BOUNCE_MAIL flag are set (vset_lastdeliver).

The engine is reactor code: the store answers Deferreds, file work runs through
the *thread* callable given, programs and forwards through the callables of
the caller (``LocalDelivery`` in-process, or the command).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Awaitable, Callable, Mapping

from indimail.delivery.maildir import MaildirWriter
from indimail.delivery.result import (
    DEFERRAL, FAILURE, SUCCESS, DeliveryError, DeliveryResult, permanent, temporary)

from indimail.fastlog import Logger
from . import cluster, vfilter, warning
from .flags import BOUNCE_MAIL
from .maildirsize import MaildirSize, Usage, count_maildir
from .quota import Quota, QuotaError

DELETE_ALL = "delete"
BOUNCE_ALL = "bounce-no-mailbox"
HOLD_OVERQUOTA = "holdoverquota"
BOUNCE_FLAG_ROOM = 1024000
DUPLICATE_INTERVAL = 900

log = Logger()


def inactive_text(user: str, domain: str) -> str:
    return f"account {user}@{domain} is inactive. indimail(#5.1.3)"


def no_account_text(user: str, domain: str) -> str:
    return f"no account {user}@{domain} here by that name. indimail (#5.1.5)"


def quota_text(target: str, msgsize: int, usage: Usage, quota: Quota) -> str:
    """``quota_message()``: ``<who> has insufficient quota. size/bytes:count/maxcount:maxbytes``."""
    return (f"{target} has insufficient quota. {msgsize}/{usage.size}:{usage.count}/"
            f"{quota.count}:{quota.size}. indimail (#5.1.4)")


def locked_text(user: str, domain: str, size: int, limit: int) -> str:
    return f"account {user}@{domain} locked/overquota {size}/{limit}. indimail (#5.1.1)"


@dataclass(frozen=True)
class Request:
    """One recipient handed to vdelivermail."""

    message: Path
    sender: str
    user: str             # $EXT: the local part (empty means postmaster)
    domain: str           # $HOST
    instruction: str      # the last argument: what to do with unknown users
    prefix: bytes         # Return-Path + Delivered-To (+ QQEH) lines
    env: Mapping[str, str] = field(default_factory=dict)
    vfilter: bool = False  # run as vfilter: apply the vfilter rules first

    def flag(self, name: str) -> bool:
        value = self.env.get(name)
        return bool(value) and value != "0"


Forward = Callable[[list], Awaitable[int]]
Program = Callable[[str], Awaitable[object]]
Relay = Callable[[str, str], Awaitable[DeliveryResult]]   # (SMTPROUTE value, recipient)


class VDeliverMail:
    """Delivers for virtual domains.  *thread* runs blocking calls (returns a
    Deferred); *forward*, *program* and *relay* are the caller's ways to
    re-inject, run a ``|`` line and reach a peer."""

    def __init__(self, store, *, thread: Callable, forward: Forward, program: Program,
                 relay: Relay | None = None, writer: MaildirWriter | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.relay = relay
        self.thread = thread
        self.forward = forward
        self.program = program
        self.writer = writer or MaildirWriter(clock=clock)
        self.clock = clock

    async def deliver(self, request: Request) -> DeliveryResult:
        """The outcome of delivering *request*; never raises DeliveryError.
        Like the C program, a plain success says nothing (qmail-local adds
        its ``did`` line); notes on the instruction and ``qp`` of forwards do."""
        try:
            return await self._deliver(request)
        except DeliveryError as exc:
            result = exc.result
        if result.status == FAILURE and request.flag("DISCARD_BOUNCE"):
            return DeliveryResult(SUCCESS, result.report)
        return result

    async def _deliver(self, req: Request) -> DeliveryResult:
        user = (req.user or "postmaster").lower()
        domain = req.domain.lower()
        size = await self.thread(_file_size, req.message)
        if size == 0:
            return DeliveryResult(SUCCESS, "vdelivermail: discarding 0 size message")
        msgsize = size + len(req.prefix)
        try:
            real = await self.store.real_domain(domain)
            vuser = await self.store.get_user(user, real) if real else None
            aliases = [] if vuser is not None or not real else \
                await self.store.alias_lines(user, real)
        except Exception as exc:   # the database is away: keep the mail queued
            log.failure("store lookup for {user}@{domain}", user=user, domain=domain)
            raise temporary(f"vdelivermail: temporary authentication error: {exc}") from None
        if real is None:
            raise permanent(f"vdelivermail: No such domain {domain}")
        if vuser is None:
            if aliases:
                return await self._lines(req, aliases, user, real)
            routed = await self._cluster(req, user, real)
            if routed is not None:
                return routed
            return await self._reject(req, user, real, 1)
        if getattr(self.store, "is_distributed", lambda _domain: False)(real):
            # a distributed domain's user kept by another mail store goes there
            routed = await self._cluster(req, vuser.pw_name, real, need_hostid=True)
            if routed is not None:
                return routed
        if vuser.inactive and not req.flag("ALLOW_INACTIVE"):
            return await self._reject(req, vuser.pw_name, real, 0)
        if req.vfilter:
            verdict = await self._filter(req, vuser, real)
            if verdict is not None:
                return await self._filtered(req, vuser, real, msgsize, verdict)
        result = await self._process(req, vuser, real, msgsize)
        if vuser.pw_gecos.startswith("MailGroup "):     # keep groups from going inactive
            await self._bookkeep(self.store.record_auth, vuser.pw_name, real, "deli", "",
                                 self.clock(), 0, vuser.pw_gecos[10:])
        return result

    async def _bookkeep(self, fn, *args) -> None:
        """A bookkeeping write whose failure must not fail (and so repeat) a delivery."""
        try:
            await fn(*args)
        except Exception:
            log.failure("vdelivermail bookkeeping")

    # -- cluster routing -----------------------------------------------------

    async def _cluster(self, req: Request, user: str, domain: str,
                       need_hostid: bool = False) -> DeliveryResult | None:
        """Relay to the mail store hostcntrl names for a user we do not hold
        (*need_hostid*: only when this node knows its own host id)."""
        if self.relay is None:
            return None
        try:
            hostid = await self.thread(cluster.local_hostid, req.env)
            if need_hostid and hostid is None:
                return None
            route = await cluster.find_route(self.store, user, domain, hostid)
        except Exception as exc:
            raise temporary(f"vdelivermail: temporary authentication error: {exc}") from None
        if route is None:
            return None
        return await self.relay(route, f"{user}@{domain}")

    # -- vfilter -------------------------------------------------------------

    async def _filter(self, req: Request, vuser, domain: str):
        """The verdict of prefilt@domain, the user's and postfilt@domain's rules."""
        maildir = Path(vuser.pw_dir) / "Maildir"
        names = await self.thread(vfilter.header_list, _headerlist(req.env))
        headers = None
        emailid = f"{vuser.pw_name}@{domain}"
        for filterid, skip, needs in ((f"prefilt@{domain}", "noprefilt", None),
                                      (emailid, None, "vfilter"),
                                      (f"postfilt@{domain}", "nopostfilt", None)):
            if skip and await self.thread(_exists, maildir / skip):
                continue
            if needs and not await self.thread(_exists, maildir / needs):
                return None      # no user filter: upstream stops before postfilt
            try:
                rules = await self.store.filters(filterid)
            except Exception as exc:
                raise temporary(f"vfilter: temporary database error: {exc}") from None
            if not rules:
                continue
            if headers is None:
                headers = await self.thread(vfilter.message_headers, req.message)
            try:
                mapped, book = await vfilter.address_context(
                    rules, headers, maildir, self.thread, self.store.real_domain)
            except Exception as exc:
                raise temporary(f"vfilter: temporary database error: {exc}") from None
            verdict = vfilter.first_match(rules, headers, names, emailid, mapped, book)
            if verdict is not None:
                return verdict
        return None

    async def _filtered(self, req: Request, vuser, domain: str, msgsize: int,
                        verdict) -> DeliveryResult:
        """myExit() of vfilter: deliver to the folder, forward or feed a
        program, bounce, or drop (``/NoDeliver``)."""
        reports = []
        if verdict.deliver:
            env = dict(req.env)
            env.pop("MAILDIRFOLDER", None)
            if verdict.maildir_folder:
                env["MAILDIRFOLDER"] = verdict.maildir_folder
            result = await self._process(replace(req, env=env), vuser, domain, msgsize)
            if result.report:
                reports.append(result.report)
            if not verdict.action and not verdict.bounce:
                return result
        if verdict.action in (2, 3) and verdict.forward:
            target = verdict.forward
            if target.startswith("|"):
                outcome = await self.program(target[1:])
                if getattr(outcome, "output", ""):
                    reports.append(outcome.output)
                if outcome.status != SUCCESS:
                    raise DeliveryError(outcome.status, "\n".join(reports))
            else:
                qp = await self.forward([target.lstrip("&")])
                reports.append(f"qp {qp}")
        if verdict.bounce:
            raise permanent(vfilter.bounce_text(req.domain))
        if not verdict.deliver:
            reports.append("Mail BlackHoled")
        return DeliveryResult(SUCCESS, "\n".join(reports))

    # -- a known user --------------------------------------------------------

    async def _process(self, req: Request, vuser, domain: str, msgsize: int) -> DeliveryResult:
        """``processMail()``: bounce flag, aliases, then the user's Maildir."""
        maildir = Path(vuser.pw_dir) / "Maildir"
        try:
            quota = vuser.quota
        except QuotaError as exc:
            raise temporary(f"vdelivermail: parse_quota: {exc}") from None
        if vuser.has(BOUNCE_MAIL):
            # the flag stands aside only while a 1 MB message would still fit,
            # and is then cleared (vset_lastdeliver(user, domain, 0))
            used = await self.thread(count_maildir, maildir)
            if quota.unlimited or used.size + BOUNCE_FLAG_ROOM >= quota.size:
                text = locked_text(vuser.pw_name, domain, used.size, quota.size)
                if await self.thread(_exists, maildir / HOLD_OVERQUOTA):
                    raise temporary(text)
                raise permanent(text)
            await self._bookkeep(self.store.update_user, vuser.with_(pw_gid=vuser.pw_gid &
                                                                     ~BOUNCE_MAIL))
        if req.user and not req.flag("NOALIAS"):
            try:
                lines = await self.store.alias_lines(vuser.pw_name, domain)
            except Exception as exc:
                raise temporary(f"vdelivermail: temporary authentication error: {exc}") from None
            if not lines:
                # doAlias(): a .qmail in the user's directory; an empty one swallows the mail
                lines = await self.thread(_dot_qmail, Path(vuser.pw_dir), vuser.address)
            if lines is not None:
                return await self._lines(req, lines, vuser.pw_name, domain,
                                         own=(maildir, quota, msgsize, vuser))
        if req.flag("ELIMINATE_DUPS"):
            interval = _int(req.env.get("DUPLICATE_INTERVAL"), DUPLICATE_INTERVAL)
            try:
                dup = await self.thread(is_duplicate, maildir, req.message, self.clock(),
                                        interval)
            except OSError as exc:
                raise temporary(f"ismaildup: {maildir / DUPFILE}: "
                                f"{os.strerror(exc.errno)}. (#4.3.0)") from None
            if dup:
                return DeliveryResult(SUCCESS, "ismaildup: discarding duplicate msg")
        target = f"{vuser.pw_name}@{domain}"
        folder = req.env.get("MAILDIRFOLDER")
        into = await self.thread(_folder, maildir, folder) if folder else maildir
        into = await self.thread(_date_folder, into, self.clock())
        return await self._maildir(req, maildir, quota, msgsize, target, into, vuser)

    async def _maildir(self, req: Request, maildir: Path, quota: Quota, msgsize: int,
                       target: str, into: Path, vuser=None) -> DeliveryResult:
        """Write into *into* (the Maildir or one of its folders) within the
        *quota* kept in *maildir* (unlimited: no maildirsize file)."""
        if quota.size == 0 and quota.count == 0:
            await self.thread(self.writer.deliver, into, req.prefix, req.message)
            return DeliveryResult(SUCCESS, "")
        now = self.clock()
        await self.thread(_ensure_dir, maildir)
        quotafile = MaildirSize(maildir)
        force = _int(req.env.get("OVERQUOTA_MAILSIZE"), 0)
        try:
            fits, usage = await self.thread(quotafile.reserve, quota, msgsize, now, force)
        except OSError as exc:
            raise temporary(f"vdelivermail: {quotafile.path}: {os.strerror(exc.errno)}. "
                            "(#4.3.0)") from None
        if not fits:
            text = quota_text(target, msgsize, usage, quota)
            await self._over_quota(req, maildir, vuser, usage, quota, msgsize)
            if await self.thread(_exists, maildir / HOLD_OVERQUOTA):
                raise temporary(text)
            raise permanent(text)
        try:
            await self.thread(self.writer.deliver, into, req.prefix, req.message)
        except BaseException:
            await self.thread(quotafile.release, msgsize)
            raise
        if vuser is not None:
            await self._quota_warning(req, maildir, vuser, usage.plus(msgsize), quota)
        return DeliveryResult(SUCCESS, "")

    async def _over_quota(self, req: Request, maildir: Path, vuser, usage: Usage,
                          quota: Quota, msgsize: int) -> None:
        """deliver_mail()'s over-quota steps: OVERQUOTA_CMD with six arguments,
        and, when the box is past its quota, the usage in userquota and the
        BOUNCE_MAIL flag on the user (vset_lastdeliver)."""
        if vuser is None:
            return
        command = await self.thread(warning.overquota_command, req.env)
        if command:
            args = [vuser.address, str(msgsize), str(usage.size), str(usage.count),
                    vuser.pw_shell, "dummy"]
            await self._run_quietly(command, args)
        if usage.size > quota.size or (quota.count and usage.count > quota.count):
            await self._bookkeep(self.store.set_usage, vuser.pw_name, vuser.pw_domain,
                                 usage.size, self.clock())
            if not vuser.has(BOUNCE_MAIL):
                await self._bookkeep(self.store.update_user,
                                     vuser.with_(pw_gid=vuser.pw_gid | BOUNCE_MAIL))

    async def _quota_warning(self, req: Request, maildir: Path, vuser, usage: Usage,
                             quota: Quota) -> None:
        """MailQuotaWarn(): warn once a week past a QUOTAWARNn percentage."""
        percent = warning.warn_percent(req.env, quota, usage)
        if percent is None:
            return
        now = self.clock()
        try:
            if not await self.thread(warning.stamp_due, maildir, now):
                return
            await self.thread(warning.touch_stamp, maildir, now)
            command = await self.thread(warning.overquota_command, req.env)
            if command:
                await self._run_quietly(command, warning.warn_args(
                    vuser.address, maildir, usage, quota, percent))
            else:
                text = warning.warning_message(vuser.address, vuser.pw_domain, usage, quota,
                                               percent, now)
                await self.thread(warning.deliver_warning, self.writer, maildir, text)
        except Exception:
            log.failure("quota warning for {user}", user=vuser.address)

    async def _run_quietly(self, command: str, args: list[str]) -> None:
        """Run OVERQUOTA_CMD with *args* (shell-quoted); its outcome is only logged."""
        import shlex
        try:
            await self.program(" ".join([command] + [shlex.quote(a) for a in args]))
        except Exception:
            log.failure("running {command}", command=command)

    # -- alias lines and the instruction for unknown users ------------------

    async def _lines(self, req: Request, lines: list[str], user: str,
                     domain: str, own=None) -> DeliveryResult:
        """Deliver to each valias (or .qmail) line: Maildir, ``|program`` or address.
        A line naming the user's own Maildir (*own*: maildir, quota, msgsize,
        user; e.g. after vmoduser -l's autoresponder) keeps the user's quota."""
        outputs: list[str] = []
        forwards: list[str] = []
        for line in lines:
            line = line.strip()
            if not line or line.lower() == f"{user}@{domain}":
                continue
            if own is not None and line.startswith("/") and Path(line) == own[0]:
                maildir, quota, msgsize, vuser = own
                await self._maildir(req, maildir, quota, msgsize, vuser.address, maildir,
                                    vuser)
            elif line.startswith("/"):
                await self.thread(self.writer.deliver, Path(line), req.prefix, req.message)
            elif line.startswith("|"):
                outcome = await self.program(line[1:])
                if getattr(outcome, "output", ""):
                    outputs.append(outcome.output)
                if outcome.status != SUCCESS:
                    raise DeliveryError(outcome.status, "\n".join(outputs))
                if outcome.stop:
                    break
            else:
                forwards.append(line[1:] if line.startswith("&") else line)
        report = outputs
        if forwards:
            qp = await self.forward(forwards)
            report.append(f"qp {qp}")
        return DeliveryResult(SUCCESS, "\n".join(report))

    async def _reject(self, req: Request, user: str, domain: str, status: int) -> DeliveryResult:
        """``reject_mail()``: status 0 inactive, 1 no such user."""
        bounce = req.instruction
        if bounce == DELETE_ALL:
            return DeliveryResult(SUCCESS, "")
        if bounce == BOUNCE_ALL or not bounce:
            raise permanent(inactive_text(user, domain) if status == 0
                            else no_account_text(user, domain))
        if status == 0:
            note = (f"account {user}@{domain} is inactive delivering to {bounce}. "
                    f"indimail(#5.1.7)")
        else:
            note = f"no account {user}@{domain} - delivering to {bounce}. indimail (#5.1.6)"
        if bounce.startswith("/"):
            await self.thread(self.writer.deliver, _maildir_path(bounce), req.prefix,
                              req.message)
            return DeliveryResult(SUCCESS, note)
        if "@" in bounce:
            qp = await self.forward([bounce])
            return DeliveryResult(SUCCESS, note + f"\nqp {qp}")
        # domain:ip:port: hand the mail to the SMTP server of a cluster peer
        if status == 0:
            raise permanent(note)
        if bounce.count(":") != 2 or self.relay is None:
            raise temporary(f"Invalid SMTPROUTE Specification [{bounce}]. indimail (#5.1.8)")
        result = await self.relay(bounce, f"{user}@{domain}")
        return DeliveryResult(result.status, note + "\n" + result.report)


# -- ELIMINATE_DUPS (ismaildup) ----------------------------------------------

DUPFILE = "dupmd5"
DUP_HEADERS = (b"received", b"delivered-to", b"x-delivered-to")


def header_digest(message: Path, skip: tuple = DUP_HEADERS) -> str:
    """MD5 (hex) of the message's header without the lines that differ per
    copy (``822header -X received -X delivered-to -X x-delivered-to``)."""
    digest = hashlib.md5(usedforsecurity=False)
    dropping = False
    with open(message, "rb") as f:
        for line in f:
            if line in (b"\n", b"\r\n"):
                break
            if line[:1] in (b" ", b"\t"):
                if not dropping:
                    digest.update(line)
                continue
            name = line.split(b":", 1)[0].strip().lower()
            dropping = name in skip
            if not dropping:
                digest.update(line)
    return digest.hexdigest()


def seen_before(maildir: Path, md5: str, now: float, interval: int) -> bool:
    """Whether *md5* was recorded in ``<maildir>/dupmd5`` within *interval*
    seconds; records it otherwise.  Expired records are dropped (under an
    fcntl lock).  QUIRK: upstream's duplicateMD5() compares only records
    *older* than the interval, so it never finds a recent duplicate; we do
    what ELIMINATE_DUPS is documented to do."""
    fd = os.open(maildir / DUPFILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        keep = []
        for line in data.decode("ascii", "replace").splitlines():
            stamp, _, value = line.partition(" ")
            try:
                when = int(stamp)
            except ValueError:
                continue
            if now <= when + interval:
                if value.strip() == md5:
                    return True
                keep.append(line)
        keep.append(f"{int(now)} {md5}")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, ("\n".join(keep) + "\n").encode())
        return False
    finally:
        os.close(fd)


def is_duplicate(maildir: Path, message: Path, now: float, interval: int) -> bool:
    """ismaildup(): the message's header digest was seen in *maildir* lately."""
    os.makedirs(maildir, mode=0o700, exist_ok=True)
    return seen_before(maildir, header_digest(message), now, interval)


def _headerlist(env: Mapping[str, str]) -> Path | None:
    """The ``headerlist`` file: ``HEADERLIST``, else in the control directory."""
    if env.get("HEADERLIST"):
        return Path(env["HEADERLIST"])
    control = env.get("CONTROLDIR") or (
        str(Path(env["INDIMAIL_HOME"]) / "control") if env.get("INDIMAIL_HOME") else None)
    return Path(control) / "headerlist" if control else None


def _maildir_path(line: str) -> Path:
    """The instruction's path as ``reject_mail()`` reads it: ``/Maildir/`` is added
    to a path that does not name one."""
    if "/Maildir/" in line or line.rstrip("/").endswith("/Maildir"):
        return Path(line)
    return Path(line) / "Maildir"


def _int(text, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _folder(maildir: Path, name: str) -> Path:
    """``MAILDIRFOLDER`` (set by vfilter): the ``.name`` folder of the Maildir,
    created with its ``maildirfolder`` marker as courier-imap expects."""
    folder = maildir / (name if name.startswith(".") else "." + name)
    try:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(folder / sub, mode=0o700, exist_ok=True)
        (folder / "maildirfolder").touch(mode=0o644, exist_ok=True)
    except OSError as exc:
        raise temporary(f"vdelivermail: access: {folder}: {os.strerror(exc.errno)}: "
                        "indimail (#5.1.2)") from None
    return folder


DATE_FORMAT = "folder.dateformat"


def _date_folder(into: Path, now: float) -> Path:
    """``vmoduser -D``: a ``folder.dateformat`` in the target holds a strftime
    format; the mail goes to the sub-Maildir it names for *now* (local time),
    made on first use (upstream deliver_mail's dateFolder)."""
    try:
        text = (into / DATE_FORMAT).read_text(errors="replace")
    except FileNotFoundError:
        return into
    except OSError as exc:
        raise temporary(f"deliver_mail: open: {into / DATE_FORMAT}: "
                        f"{os.strerror(exc.errno)}") from None
    fmt = text.splitlines()[0].strip() if text.strip() else ""
    if not fmt:
        raise temporary(f"{into / DATE_FORMAT}: bad line. indimail (#5.1.2)")
    folder = into / time.strftime(fmt, time.localtime(now))
    try:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(folder / sub, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise temporary(f"deliver_mail: r_mkdir: {folder}: {os.strerror(exc.errno)}: "
                        "indimail (#5.1.2)") from None
    return folder


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise temporary(f"Unable to read message: {os.strerror(exc.errno)}. (#4.3.0)") from None


def _exists(path: Path) -> bool:
    return os.path.exists(path)


def _ensure_dir(path: Path) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise temporary(f"vdelivermail: access: {path}: {os.strerror(exc.errno)}: "
                        "indimail (#5.1.2)") from None


def _dot_qmail(directory: Path, address: str) -> list[str] | None:
    """The lines of ``<pw_dir>/.qmail`` minus those naming the user itself;
    None when there is no such file (an empty file swallows the mail)."""
    try:
        data = (directory / ".qmail").read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise temporary(f"vdelivermail: open: {directory}/.qmail: "
                        f"{os.strerror(exc.errno)}") from None
    lines = [ln.strip() for ln in data.decode("utf-8", "surrogateescape").splitlines()]
    return [ln for ln in lines if ln and ln.lower() != address.lower()]


def result_code(result: DeliveryResult) -> int:
    """qmail-local's exit code for a program: 0, 100 (bounce) or 111 (defer)."""
    return {SUCCESS: 0, FAILURE: 100, DEFERRAL: 111}[result.status]
