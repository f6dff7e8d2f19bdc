"""The virtual-domain admin operations behind vadddomain, vadduser, vpasswd, ...

Each operation is asynchronous over a :class:`VStore`: SQL runs in the store's
pool, file-system work and password hashing in the reactor's thread pool, so
indisrvr can call them from a running reactor.  Failures raise
:class:`AdminError` with the text the command prints.  The layout is ours:
a domain lives in ``<home>/domains/<domain>``, its users in
``<domain dir>/<user>`` and, past the first :data:`USERS_PER_LEVEL` users,
in vpopmail/IndiMail's hashed subdirectories (``0/``, ``0/1/``, ...).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import defer, threads

from indimail.auth import schemes
from indimail.cli.qmail_newu import NewuError, newu
from indimail.config.home import Home
from indimail.config.init import check_domain, remove_domain_entries

from .domainopts import (DomainOptions, OptionError, add_dbinfo, assign_entries, check_bounce,
                         domain_settings, drop_domain_files, etrn_domain_known, give,
                         is_etrn_domain, write_domain_files)
from .dominfo import base_dir, host_details, smtp_ports
from .quota import Quota, format_quota, parse_quota
from .records import VUser
from .store import DomainExists, UserExists, VStore, deferred

USERS_PER_LEVEL = 100
DIR_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
POP_USER = 1          # pw_uid IndiMail gives a new user (POP access)
DEFAULT_SCHEME = "SHA512-CRYPT"
HASHES = {"DES": "DES", "MD5": "MD5", "SHA256": "SHA256-CRYPT", "SHA-256": "SHA256-CRYPT",
          "SHA512": "SHA512-CRYPT", "SHA-512": "SHA512-CRYPT"}
_SALT = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class AdminError(Exception):
    """An admin operation failed; ``str()`` is the message, ``code`` the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def user_subdir(index: int, per_level: int = USERS_PER_LEVEL) -> str:
    """The hashed subdirectory of the *index*-th user of a domain (0-based):
    ``""`` for the first *per_level* users, then one directory per further
    *per_level* users, named from 62 characters and nested one level deeper
    (``0``..``z``, ``0/0``..``z/z``, ...) as vpopmail's dir_control does."""
    bucket = index // per_level
    if bucket == 0:
        return ""
    bucket -= 1
    width = 1
    while bucket >= len(DIR_CHARS) ** width:
        bucket -= len(DIR_CHARS) ** width
        width += 1
    parts = []
    for _ in range(width):
        bucket, digit = divmod(bucket, len(DIR_CHARS))
        parts.append(DIR_CHARS[digit])
    return "/".join(reversed(parts))


def hash_scheme(name: str) -> str:
    """The schemes-module name of a ``vpasswd -h`` argument; AdminError if unknown."""
    scheme = HASHES.get(name.upper())
    if scheme is None:
        raise AdminError(f"{name}: wrong hash method\n"
                         "Supported HASH Methods: DES MD5 SHA-256 SHA-512 "
                         "SCRAM-SHA-1 SCRAM-SHA-256", 100)
    return scheme


def make_password(clear: str, scheme: str = DEFAULT_SCHEME, *, cram: bool = False,
                  encrypted: bool = False, randbytes=os.urandom) -> str:
    """The pw_passwd to store (blocking: run in a thread).  *encrypted* stores
    *clear* as given (``-e``); *cram* keeps a CRAM-usable clear text (``-C``)."""
    if encrypted:
        return clear
    password = clear.encode("utf-8")
    if scheme in schemes.SCRAM_HASHES:
        return schemes.hash_password(password, scheme, keep_cleartext=cram,
                                     randbytes=randbytes)
    if cram:
        return schemes.hash_password(password, "CRAM")
    if scheme in ("MD5", "DES"):
        salt = "".join(_SALT[b % 64] for b in randbytes(8))
        return schemes.crypt_password(password, "$1$" + salt if scheme == "MD5" else salt[:2])
    return schemes.hash_password(password, scheme, randbytes=randbytes)


def password_hash_name(passwd: str) -> str:
    """The scheme vuserinfo shows after the password."""
    for name in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        if passwd.startswith("{" + name + "}"):
            return name
    if len(passwd) > 2 and passwd[0] == "$" and passwd[2] == "$":
        return {"1": "MD5", "5": "SHA256", "6": "SHA512"}.get(passwd[1], "$?$")
    return "DES"


def split_address(address: str) -> tuple[str, str]:
    """(user, domain) of ``user@domain``, lower-cased; AdminError without a domain."""
    user, at, domain = address.strip().rpartition("@")
    if not at or not user or not domain:
        raise AdminError(f"{address}: No domain specified")
    return user.lower(), domain.lower()


@dataclass
class DomainInfo:
    """What vdominfo shows of one domain."""

    domain: str
    real_domain: str
    uid: int
    gid: int
    directory: str
    users: int
    limits: bool
    aliases: list[str]
    base_dir: str = ""                  # where the users' directories start
    host: tuple[str, str] | None = None  # (host ID, IP address) when control/host.cntrl exists
    ports: list = field(default_factory=list)   # smtp_port rows: (src_host, host, port)

    def render(self) -> str:
        name = self.domain if self.domain == self.real_domain else \
            f"{self.domain} aliased to {self.real_domain}"
        lines = [f"    domain: {name}", f"       uid: {self.uid}", f"       gid: {self.gid}",
                 f"Domain Dir: {self.directory}"]
        if self.domain == self.real_domain:
            lines += [f"     Users: {self.users}",
                      f"   vlimits: {'enabled' if self.limits else 'disabled'}"]
            if self.aliases:
                lines += ["AliasDomains:"] + self.aliases
        return "\n".join(lines) + "\n"


class Admin:
    """The operations on one home and its store."""

    def __init__(self, home: Home, store: VStore, *, reactor=None,
                 uid: int | None = None, gid: int | None = None,
                 vdelivermail: str | None = None, clock=time.time):
        self.home = home
        self.store = store
        self.reactor = reactor if reactor is not None else store.reactor
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.vdelivermail = vdelivermail or str(Path(sys.executable).parent / "vdelivermail")
        self.clock = clock

    def _thread(self, fn, *args, **kwargs) -> defer.Deferred:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                         fn, *args, **kwargs)

    def domain_dir(self, domain: str) -> Path:
        return Path(self.home.domains) / domain

    # -- domains -----------------------------------------------------------

    @deferred
    async def add_domain(self, domain: str, password: str | None = None,
                         scheme: str = DEFAULT_SCHEME, remote_ip: str = "127.0.0.1", *,
                         options: DomainOptions | None = None, env=None, say=None) -> None:
        """vadddomain: register *domain*, write its files and control lines, and
        add postmaster with *password* (no postmaster when it is None).
        *options* are vadddomain's (:mod:`.domainopts`); an ETRN/AUTOTURN
        domain gets files and control lines only.  *say* prints ``-v`` lines."""
        o = options or DomainOptions()
        say = say if say is not None and o.verbose else (lambda text: None)
        try:
            domain = check_domain(domain)
            if o.quota is not None:
                parse_quota(o.quota)
            if o.bounce is not None:
                check_bounce(o.bounce)
        except (ValueError, OptionError) as exc:
            raise AdminError(str(exc), getattr(exc, "code", 1)) from None
        if await self.store.real_domain(domain) is not None or (
                o.etrn and await self._thread(etrn_domain_known, self.home, domain)):
            raise AdminError(f"domain {domain} exists")
        if not o.etrn:
            try:
                await self.store.add_domain(domain)
            except DomainExists as exc:
                raise AdminError(str(exc)) from None
        await self._thread(self._domain_files, domain, o)
        if o.cluster is not None:
            try:
                await add_dbinfo(self, domain, o.cluster, os.environ if env is None else env,
                                 say)
            except OptionError as exc:
                raise AdminError(str(exc), exc.code) from None
        if o.etrn or password is None:
            return
        if o.cluster is not None and o.cluster.distributed and \
                await self.store.mailstore("postmaster", domain) is not None:
            return      # the cluster's first node made it
        await self.add_user(f"postmaster@{domain}", password, scheme=scheme,
                            gecos="Postmaster", quota=o.quota, remote_ip=remote_ip)

    def _domain_files(self, domain: str, o: DomainOptions | None = None) -> None:
        o = o or DomainOptions()
        program = self.vdelivermail
        if o.vfilter:
            program = str(Path(program).parent / "vfilter")
        write_domain_files(self.home, domain, o, program)
        if not o.optimize:
            self._newu()

    def _newu(self) -> None:
        try:
            newu(self.home.users)
        except NewuError as exc:
            raise AdminError(f"qmail-newu: {exc}", 111) from None

    @deferred
    async def delete_domain(self, domain: str) -> None:
        """vdeldomain: drop *domain* (or alias domain), its users, files and lines."""
        domain = domain.strip().lower()
        real = await self.store.real_domain(domain)
        if real is None:
            if not await self._thread(is_etrn_domain, self.home, domain):
                raise AdminError(f"domain {domain} does not exist")
            await self._thread(self._drop_domain_files, domain, True)   # a -t domain
            return
        if real != domain:       # an alias domain: only its name goes
            await self.store.delete_alias_domain(domain)
            await self._thread(self._drop_domain_files, domain, False)
            return
        for alias, _ in await self.store.list_alias_domains(domain):
            await self.store.delete_alias_domain(alias)
            await self._thread(self._drop_domain_files, alias, False)
        await self.store.delete_domain(domain)
        await self._thread(self._drop_domain_files, domain, True)

    def _drop_domain_files(self, domain: str, tree: bool) -> None:
        settings = domain_settings(self.home, domain)     # while assign still has it
        remove_domain_entries(self.home, domain)
        self._newu()
        if self.domain_dir(domain).is_symlink():     # an alias domain's (or -d's) link
            self.domain_dir(domain).unlink()
        if tree:
            shutil.rmtree(self.domain_dir(domain), ignore_errors=True)
            drop_domain_files(self.home, domain, settings)

    @deferred
    async def domain_info(self, domain: str | None = None, env=None) -> list[DomainInfo]:
        """vdominfo: the domain (or every domain of the store); the cluster
        lines (host ID, IP address, smtp_port rows) when ``host.cntrl`` exists."""
        if domain is None:
            names = await self.store.list_domains()
        else:
            domain = domain.strip().lower()
            if await self.store.real_domain(domain) is None:
                raise AdminError(f"{domain}: domain does not exist")
            names = [domain]
        assign = await self._thread(assign_entries, Path(self.home.users) / "assign")
        host = await self._thread(host_details, self.home, os.environ if env is None else env)
        infos = []
        for name in names:
            real = await self.store.real_domain(name) or name
            uid, gid, directory = assign.get(real, (self.uid, self.gid, str(self.domain_dir(real))))
            infos.append(DomainInfo(
                name, real, uid, gid, directory,
                await self.store.count_users(real), await self.store.has_limits(real),
                [a for a, _ in await self.store.list_alias_domains(real)],
                await self._thread(base_dir, Path(directory)), host,
                await smtp_ports(self.store, name) if host else []))
        return infos

    # -- users -------------------------------------------------------------

    @deferred
    async def add_user(self, address: str, password: str, *, scheme: str = DEFAULT_SCHEME,
                       gecos: str | None = None, quota: str | None = None,
                       encrypted: bool = False, cram: bool = False,
                       remote_ip: str = "127.0.0.1") -> VUser:
        """vadduser: the row, the (hashed) home directory and its Maildir."""
        name, domain = split_address(address)
        real = await self.store.real_domain(domain)
        if real is None:
            raise AdminError(f"{domain}: No such domain")
        if await self.store.get_user(name, real) is not None:
            raise AdminError(f"username {name}@{real} exists")
        control = await self.store.dir_control(real) or {}
        index = int(control.get("cur_users") or 0)
        settings = await self._thread(domain_settings, self.home, real)
        subdir = user_subdir(index, settings.users_per_level or USERS_PER_LEVEL)
        if quota is None:
            limits = await self.store.get_limits(real)
            shell = format_quota(Quota(max(limits.defaultquota, 0),
                                       max(limits.defaultmaxmsgcount, 0)))
        else:
            try:
                shell = format_quota(parse_quota(quota))
            except ValueError as exc:
                raise AdminError(str(exc)) from None
        root = settings.users_root(real)
        directory = root / subdir / name if subdir else root / name
        passwd = await self._thread(make_password, password, scheme, cram=cram,
                                    encrypted=encrypted)
        user = VUser(name, real, passwd, POP_USER, 0, name if gecos is None else gecos,
                     str(directory), shell)
        try:
            await self.store.add_user(user)
        except UserExists as exc:
            raise AdminError(str(exc)) from None
        if control:
            await self.store.set_dir_control(real, cur_users=index + 1, the_dir=subdir)
        await self._thread(make_maildir, directory, root, (settings.uid, settings.gid))
        await self.store.record_auth(name, real, "add", remote_ip, self.clock())
        return user

    @deferred
    async def delete_user(self, address: str) -> VUser:
        """vdeluser: the row, its per-user rows and the home directory."""
        user = await self._user(address)
        await self.store.delete_user(user.pw_name, user.pw_domain)
        settings = await self._thread(domain_settings, self.home, user.pw_domain)
        roots = (self.domain_dir(user.pw_domain), settings.users_root(user.pw_domain))
        if user.pw_dir and any(Path(user.pw_dir).is_relative_to(r) for r in roots):
            await self._thread(shutil.rmtree, user.pw_dir, True)
        return user

    @deferred
    async def set_password(self, address: str, password: str, *,
                           scheme: str = DEFAULT_SCHEME, encrypted: bool = False,
                           cram: bool = False, remote_ip: str = "127.0.0.1") -> VUser:
        """vpasswd: store a new password for the user."""
        user = await self._user(address)
        passwd = await self._thread(make_password, password, scheme, cram=cram,
                                    encrypted=encrypted)
        user = user.with_(pw_passwd=passwd)
        await self.store.update_user(user)
        await self.store.record_auth(user.pw_name, user.pw_domain, "pass", remote_ip,
                                     self.clock())
        return user

    async def _user(self, address: str, missing: str = "{name}@{domain}: No such user") -> VUser:
        """The user of *address* (alias domains followed); AdminError with
        *missing* (formatted with name and domain) when there is none."""
        name, domain = split_address(address)
        real = await self.store.real_domain(domain)
        if real is None:
            raise AdminError(f"{domain}: No such domain")
        user = await self.store.get_user(name, real)
        if user is None:
            raise AdminError(missing.format(name=name, domain=real))
        return user

    @deferred
    async def user_info(self, address: str) -> str:
        """vuserinfo: the seed's layout of the user's fields."""
        user = await self._user(address)
        last = {}
        for service in ("add", "pass", "pop3", "imap", "webm", "INAC", "ACTI"):
            last[service] = await self.store.last_auth(user.pw_name, user.pw_domain, service)
        directory = Path(user.pw_dir)
        exists, usage = await self._thread(_dir_usage, directory)
        return render_user(user, exists=exists, usage=usage, last=last,
                           database=describe_backend(self.store.backend), now=self.clock())


def describe_backend(backend) -> list[str]:
    """vuserinfo's database lines: ``host:database:user`` and, for MySQL, the
    port (or socket) and TLS use; the file for SQLite."""
    if getattr(backend, "name", "") != "mysql":
        return [f"Sql Database  : {getattr(backend, 'path', '')}"]
    lines = [f"Sql Database  : {backend.socket or backend.host}:{backend.database}:{backend.user}"]
    lines.append(f"Unix   Socket : {backend.socket}" if backend.socket else
                 f"TCP/IP Port   : {backend.port}")
    if not backend.socket:
        lines.append(f"Use SSL       : {'Yes' if backend.ssl else 'No'}")
    return lines


_assign_entries = assign_entries    # domain -> (uid, gid, directory), as vdominfo reads it


def make_maildir(directory: Path, root: Path | None = None,
                 owner: tuple[int, int] | None = None) -> None:
    """The user's directory and ``Maildir/{cur,new,tmp}`` (mode 0700).  When
    root runs it, what it made below *root* goes to the domain's *owner*."""
    made = []
    path = directory / "Maildir"
    while root is not None and path.is_relative_to(root) and not path.exists():
        made.append(path)
        path = path.parent
    for sub in ("cur", "new", "tmp"):
        (directory / "Maildir" / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        made.append(directory / "Maildir" / sub)
    if owner is not None and os.geteuid() == 0:
        give(made, *owner)


def _dir_usage(directory: Path) -> tuple[bool, tuple[int, int]]:
    """Whether *directory* exists, and the size and count of its Maildir's messages."""
    if not directory.exists():
        return False, (0, 0)
    size = count = 0
    for sub in ("cur", "new"):
        try:
            entries = list(os.scandir(directory / "Maildir" / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                size += entry.stat().st_size
                count += 1
            except FileNotFoundError:
                pass
    return True, (size, count)


def _when(record) -> str:
    stamp, _, ip = record
    return f"({ip}) {time.asctime(time.localtime(stamp))}"


def _quota_text(user: VUser) -> str:
    if user.pw_shell.startswith("NOQUOTA"):
        return "unlimited"
    mib = user.quota.size // 1048576
    value = mib if mib < 1024 else mib // 1024
    return f"{user.pw_shell} [{value:.2f} {'MiB' if mib < 1024 else 'GiB'}]"


_FLAG_LINES = ((0x01, "password can not be changed by user"), (0x02, "pop access closed"),
               (0x04, "webmail access closed"), (0x08, "imap access closed"),
               (0x200, "smtp access closed"), (0x10, "mail will be bounced back to sender"),
               (0x20, "user not allowed to relay mail"), (0x40, "no dialup flag has been set"),
               (0x80, "has qmailadmin administrator privileges"),
               (0x100, "has domain limit skip privileges"), (0x400, "user flag 0 is set"),
               (0x800, "user flag 1 is set"), (0x1000, "user flag 2 is set"),
               (0x2000, "user flag 3 is set"))


def _days(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days} days {hours:02d} Hrs {minutes:02d} Mins {secs:02d} Secs"


def render_user(user: VUser, *, exists: bool, usage: tuple[int, int], last: dict,
                database: list[str], now: float) -> str:
    """vuserinfo's output for *user* (upstream userinfo.c's field order and labels)."""
    lines = [f"name          : {user.address}",
             f"passwd        : {user.pw_passwd} ({password_hash_name(user.pw_passwd)})",
             f"uid           : {user.pw_uid}",
             f"gid           : {user.pw_gid}"]
    if user.pw_gid == 0:
        lines.append("                -all services available")
    lines += [f"                -{text}" for bit, text in _FLAG_LINES if user.pw_gid & bit]
    lines += [f"gecos         : {user.pw_gecos}",
              f"dir           : {user.pw_dir}{'' if exists else ' (missing)'}",
              f"quota         : {_quota_text(user)}",
              f"curr quota    : {usage[0]}S,{usage[1]}C",
              "Mail store    : localhost"] + database
    lines.append(f"Table Name    : {'indibak' if user.inactive else 'indimail'}")
    logins = [r for r in (last.get("pop3"), last.get("imap"), last.get("webm")) if r]
    auth = max(logins, key=lambda r: r[0]) if logins else None
    added = last.get("add")
    lines.append("Relay Allowed : NO" if auth or added else "Relay Allowed : No")
    since = auth or added
    lines.append(f"Days inact    : {_days(now - since[0])}" if since else
                 "Days inact    : Unknown")
    lines.append(f"Added On      : {_when(added)}" if added else "Added   On    : Unknown")
    if auth is None:
        lines += ["last  auth    : Not yet logged in", "last  IMAP    : Not yet logged in",
                  "last  POP3    : Not yet logged in"]
    else:
        lines.append(f"last  auth    : {_when(auth)}")
        for label, key in (("POP3", "pop3"), ("IMAP", "imap")):
            lines.append(f"last  {label}    : {_when(last[key])}" if last.get(key) else
                         f"last  {label}    : Not yet logged in")
    lines.append(f"PassChange    : {_when(last['pass'])}" if last.get("pass") else
                 "PassChange    : Not yet Changed")
    lines.append(f"Inact Date    : {_when(last['INAC'])}" if last.get("INAC") else
                 "Inact Date    : Not yet Inactivated")
    activ = last.get("ACTI") or added
    lines.append(f"Activ Date    : {_when(activ)}" if activ else "Activ Date    : Unknown")
    lines.append("Delivery Time : No Mails Delivered yet / Per Day Limit not configured")
    return "\n".join(lines) + "\n"


# -- command-line glue shared by the v* commands ---------------------------------

def run_cli(prog: str, usage: str, shortopts: str, body, argv=None) -> None:
    """Parse ``--home`` and *shortopts* (getopt, as IndiMail does), open the
    home's store, run ``body(admin, opts, args)`` under ``task.react`` and exit.
    The body returns an exit status, None (0), or the subject (domain or
    address, or a tuple of the arguments upstream passes) of a change, for
    which the post-execution handle runs."""
    import getopt

    from twisted.internet import task

    from .store import open_store

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        opts, args = getopt.getopt(argv, shortopts, ["home="])
    except getopt.GetoptError as exc:
        sys.stderr.write(f"{prog}: {exc}\n{usage}\n")
        sys.exit(100)
    home_path = next((v for k, v in opts if k == "--home"), None)
    opts = [(k, v) for k, v in opts if k != "--home"]
    home = Home.from_env(home_path, os.environ)

    async def run(reactor):
        try:
            store = await open_store(home, os.environ, reactor=reactor)
        except Exception as exc:
            sys.stderr.write(f"{prog}: unable to open the database: {exc}\n")
            return 111
        try:
            status = await body(Admin(home, store, reactor=reactor), opts, args)
        except AdminError as exc:
            sys.stderr.write(f"{prog}: {exc}\n")
            return exc.code
        except schemes.SchemeError as exc:
            sys.stderr.write(f"{prog}: {exc}\n")
            return 100
        except Exception as exc:   # database and file-system trouble: say it, exit 111
            sys.stderr.write(f"{prog}: {type(exc).__name__}: {exc}\n")
            return 111
        finally:
            store.close()
        sys.stdout.flush()
        if isinstance(status, (str, tuple)):
            return await post_handle(reactor, prog, status, home, os.environ)
        return status or 0

    def main(reactor):
        d = defer.Deferred.fromCoroutine(run(reactor))
        d.addCallback(_exit_status)
        return d

    task.react(main)


def _exit_status(status: int) -> None:
    """react() exits 0 when the Deferred fires; a non-zero status leaves through SystemExit."""
    if status:
        raise SystemExit(status)


def handle_path(prog: str, home: Home, env) -> str:
    """``$POST_HANDLE``, else ``<home>/libexec/<prog>`` (IndiMail's
    ``/usr/libexec/indimail/<prog>`` in our layout)."""
    return env.get("POST_HANDLE") or str(Path(home.path) / "libexec" / prog)


def post_handle(reactor, prog: str, subject, home: Home, env) -> defer.Deferred:
    """Run the post-execution handle with *subject* (one argument, or a tuple
    of them) on our stdout/stderr; its exit status becomes ours.  No handle
    installed: status 0."""
    from twisted.internet import error, protocol

    path = handle_path(prog, home, env)
    if not os.access(path, os.X_OK):
        return defer.succeed(0)
    done: defer.Deferred = defer.Deferred()

    class Handle(protocol.ProcessProtocol):
        def processEnded(self, reason):
            if reason.check(error.ProcessDone):
                done.callback(0)
            else:
                code = getattr(reason.value, "exitCode", None)
                done.callback(code if code is not None else 111)

    args = [subject] if isinstance(subject, str) else list(subject)
    reactor.spawnProcess(Handle(), path, [path, *args], env=dict(env),
                         childFDs={0: 0, 1: 1, 2: 2})
    return done


def read_password(prog: str, address: str) -> str:
    """Ask twice on the terminal (``New IndiMail password for ...``), as vadduser does."""
    import getpass

    first = getpass.getpass(f"New IndiMail password for {address}: ")
    second = getpass.getpass("Retype new IndiMail password: ")
    if first != second:
        raise AdminError("Passwords do not match", 1)
    return first


def password_options(opts) -> dict:
    """``scheme``/``cram``/``encrypted`` from vpasswd/vadduser's ``-h -m -C -e``."""
    options = {"scheme": DEFAULT_SCHEME, "cram": False, "encrypted": False}
    for key, value in opts:
        if key == "-h":
            options["scheme"] = hash_scheme(value)
        elif key == "-m":
            if value.upper() not in schemes.SCRAM_HASHES:
                raise AdminError(f"{value}: wrong SCRAM method (SCRAM-SHA-1 or SCRAM-SHA-256)",
                                 100)
            options["scheme"] = value.upper()
        elif key == "-C":
            options["cram"] = True
        elif key == "-e":
            options["encrypted"] = True
    return options
