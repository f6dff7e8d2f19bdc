"""What vadddomain's options change, and the per-domain settings they leave.

Upstream ``vadddomain``/``iadddomain`` place a domain in
``<dir>/domains/<domain>`` (``-d dir``, ``-u user``'s home; ours defaults to
the home), give it an assign line with its uid/gid (``-i``/``-g``), a
``.qmail-default`` naming vdelivermail or vfilter (``-f``) with the
instruction for unknown users (``-e``), ``.users_per_level`` (``-l``) and
``.base_path`` (``-B``) files that vadduser reads, a chkrcptdomains line
(``-C``), and for ETRN/ATRN (``-t``) or AUTOTURN (``-T ip``) domains a
Maildir under ``<home>/autoturn`` plus an etrnhosts line instead of a
database row.  ``-D``/``-c`` record the domain's database in dbinfo/mcdinfo.
The blocking functions here run in the reactor's thread pool.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from indimail.config.files import write_atomic, write_new
from indimail.config.init import _Builder, add_domain_entries

from . import cluster
from .backend import McdEntry, mcdinfo_path

AUTOTURN = "autoturn"
USERS_PER_LEVEL_FILE = ".users_per_level"
BASE_PATH_FILE = ".base_path"
CHKRCPTDOMAINS = "chkrcptdomains"
ETRNHOSTS = "etrnhosts"


class OptionError(Exception):
    """An option's value cannot be used; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 100):
        super().__init__(message)
        self.code = code


@dataclass
class ClusterSpec:
    """``-D -S -U -P -p -s -c``: the database of the domain for dbinfo/mcdinfo."""

    database: str
    server: str
    user: str
    password: str
    port: int
    use_ssl: bool = True
    distributed: int = 0


@dataclass
class DomainOptions:
    """vadddomain's choices; the defaults give the plain domain of our layout."""

    uid: int | None = None             # -i / -u (None: this process's)
    gid: int | None = None             # -g / -u
    base_dir: str | None = None        # -d / -u: the domain lives in <base_dir>/domains/<domain>
    base_path: str | None = None       # -B: users' directories go to <base_path>/<domain>/
    users_per_level: int = 0           # -l (0: the default, 100)
    bounce: str | None = None          # -e: unknown users' mail goes there
    vfilter: bool = False              # -f
    etrn: int = 0                      # 1: -t (ETRN/ATRN), 2: -T ipaddr (AUTOTURN)
    ipaddr: str | None = None
    chk_rcpt: bool = False             # -C
    quota: str | None = None           # -q (postmaster's quota)
    optimize: bool = False             # -O: leave users/cdb to the last add
    verbose: bool = False              # -v
    cluster: ClusterSpec | None = None

    def owner(self) -> tuple[int, int]:
        return (os.getuid() if self.uid is None else self.uid,
                os.getgid() if self.gid is None else self.gid)


def check_bounce(bounce: str) -> None:
    """Upstream accepts an address or an absolute Maildir path for ``-e``."""
    if "@" not in bounce and not bounce.startswith("/"):
        raise OptionError(f"Invalid bounce email address {bounce}")


# -- where a domain lives -----------------------------------------------------

@dataclass(frozen=True)
class DomainSettings:
    """A domain's assign entry and the files vadddomain left in its directory."""

    uid: int
    gid: int
    directory: Path
    base_path: str | None
    users_per_level: int

    def users_root(self, domain: str) -> Path:
        """Where the domain's user directories (and hashed levels) start."""
        return Path(self.base_path) / domain if self.base_path else self.directory


def assign_entries(path: Path) -> dict[str, tuple[int, int, str]]:
    """Blocking: name -> (uid, gid, directory) of users/assign's ``+name-:`` lines
    (a domain's line, or ``autoturn``'s)."""
    entries = {}
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return entries
    for line in text.splitlines():
        fields = line.split(":")
        if line.startswith("+") and len(fields) >= 5 and fields[0].endswith("-"):
            try:
                entries.setdefault(fields[0][1:-1].lower(), (int(fields[2]), int(fields[3]),
                                                             fields[4]))
            except ValueError:
                continue
    return entries


def first_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return ""
    return lines[0].strip() if lines else ""


def domain_settings(home, domain: str) -> DomainSettings:
    """Blocking: *domain*'s settings; without an assign line the home's
    directory for it and this process's uid/gid."""
    uid, gid, directory = assign_entries(Path(home.users) / "assign").get(
        domain, (os.getuid(), os.getgid(), str(Path(home.domains) / domain)))
    directory = Path(directory)
    try:
        per_level = int(first_line(directory / USERS_PER_LEVEL_FILE) or 0)
    except ValueError:
        per_level = 0
    return DomainSettings(uid, gid, directory, first_line(directory / BASE_PATH_FILE) or None,
                          max(per_level, 0))


def autoturn_dir(home) -> Path:
    """The AUTOTURN/ETRN directory: assign's ``autoturn`` entry, else ``<home>/autoturn``."""
    entry = assign_entries(Path(home.users) / "assign").get(AUTOTURN)
    return Path(entry[2]) if entry else Path(home.path) / AUTOTURN


def etrn_domain_known(home, domain: str) -> bool:
    """Blocking: whether assign or virtualdomains already route *domain*."""
    if domain in assign_entries(Path(home.users) / "assign"):
        return True
    try:
        lines = (Path(home.control) / "virtualdomains").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return False
    return any(line.split(":", 1)[0].strip().lower() == domain for line in lines)


def give(paths, uid: int, gid: int) -> None:
    """chown each path not yet owned by uid/gid (upstream's r_mkdir/chown)."""
    for path in paths:
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid, follow_symlinks=False)


# -- writing the domain's files -----------------------------------------------

def write_domain_files(home, domain: str, o: DomainOptions, program: str) -> Path:
    """Blocking: the domain's directory, files and control lines; its directory.

    *program* is the vdelivermail (or, with ``-f``, vfilter) of
    ``.qmail-default``.  The assign, virtualdomains and rcpthosts lines come
    from :func:`add_domain_entries` and are then adjusted to the options."""
    uid, gid = o.owner()
    builder = _Builder(home, {}, [])
    default_dir = Path(home.domains) / domain
    if o.etrn:
        base = Path(o.base_dir) if o.base_dir else autoturn_dir(home)
        directory = base / (domain if o.etrn == 1 else o.ipaddr)
    else:
        directory = Path(o.base_dir) / "domains" / domain if o.base_dir else default_dir
    created = _new_dirs(directory if not o.etrn else directory / "Maildir")
    add_domain_entries(home, domain)
    if directory != default_dir:      # the home's name for it becomes a link (or goes)
        if default_dir.is_dir() and not default_dir.is_symlink() and not any(
                default_dir.iterdir()):
            default_dir.rmdir()
        if not o.etrn and not os.path.lexists(default_dir):
            default_dir.symlink_to(directory)
    made: list[Path | None] = list(created)
    if o.etrn == 2:
        _autoturn_entries(builder, home, domain, o, base, uid, gid)
        made += _etrn_maildir(directory)
        made.append(_write(base / (".qmail-" + o.ipaddr.replace(".", ":") + "-default"),
                           f"./{o.ipaddr}/Maildir/\n"))
    else:
        line = f"+{domain}-:{domain}:{uid}:{gid}:{directory}:-::"
        _replace(builder, Path(home.users) / "assign", line, lambda x: x.lower().startswith(
            f"+{domain}-:"), before_dot=True)
        if o.etrn == 1:
            made += _etrn_maildir(directory)
            made.append(_write(directory / ".qmail-default", f"{directory}/Maildir/\n"))
        else:
            made.append(_write(directory / ".qmail-default",
                               f"| {program} '' {o.bounce or 'bounce-no-mailbox'}\n"))
    control = Path(home.control)
    if o.etrn:
        builder.add_line(control / ETRNHOSTS, domain, lambda x: x.strip().lower() == domain)
    elif o.chk_rcpt:
        builder.add_line(control / CHKRCPTDOMAINS, domain,
                         lambda x: x.strip().lower() == domain)
    builder.remove_lines(control / "locals", lambda x: x.strip().lower() == domain)
    if not o.etrn:
        made += _level_files(directory, o)
    if o.uid is not None or o.gid is not None:
        give([p for p in made if p is not None], uid, gid)
    return directory


def _new_dirs(directory: Path) -> list[Path]:
    """mkdir -p *directory*; the directories it created, outermost first."""
    missing = []
    path = directory
    while not path.exists():
        missing.append(path)
        path = path.parent
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    return list(reversed(missing))


def _etrn_maildir(directory: Path) -> list[Path]:
    made = []
    for sub in ("cur", "new", "tmp"):
        path = directory / "Maildir" / sub
        if not path.exists():
            path.mkdir(mode=0o700)
            made.append(path)
    return made


def _write(path: Path, text: str) -> Path | None:
    return path if write_new(path, text.encode()) else None


def _replace(builder, path: Path, line: str, present, before_dot: bool = False) -> None:
    """Make *line* the one line of *path* satisfying *present*."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    if line in lines and sum(1 for x in lines if present(x)) == 1:
        return
    builder.remove_lines(path, present)
    builder.add_line(path, line, present, before_dot=before_dot)


def _autoturn_entries(builder, home, domain: str, o: DomainOptions, base: Path,
                      uid: int, gid: int) -> None:
    """``-T``: mail for *domain* goes to the autoturn user's ``<ip>-`` extension."""
    users = Path(home.users) / "assign"
    builder.remove_lines(users, lambda x: x.lower().startswith(f"+{domain}-:"))
    builder.add_line(users, f"+{AUTOTURN}-:indimail:{uid}:{gid}:{base}:-::",
                     lambda x: x.lower().startswith(f"+{AUTOTURN}-:"), before_dot=True)
    _replace(builder, Path(home.control) / "virtualdomains", f"{domain}:{AUTOTURN}-{o.ipaddr}",
             lambda x: x.split(":", 1)[0].strip().lower() == domain)


def _level_files(directory: Path, o: DomainOptions) -> list[Path]:
    """``.users_per_level`` (``-l``) and ``.base_path`` (``-B``, made if missing)."""
    made = []
    if o.users_per_level:
        write_atomic(directory / USERS_PER_LEVEL_FILE, f"{o.users_per_level}\n".encode(), 0o600)
        made.append(directory / USERS_PER_LEVEL_FILE)
    if o.base_path:
        made += _new_dirs(Path(o.base_path))
        write_atomic(directory / BASE_PATH_FILE, f"{o.base_path}\n".encode(), 0o600)
        made.append(directory / BASE_PATH_FILE)
    return made


def drop_domain_files(home, domain: str, settings: DomainSettings) -> None:
    """Blocking (vdeldomain): the lines vadddomain's options added, the domain's
    own directory when it is not the home's, and its users under ``-B``'s path."""
    builder = _Builder(home, {}, [])
    for name in (CHKRCPTDOMAINS, ETRNHOSTS):
        if (Path(home.control) / name).exists():
            builder.remove_lines(Path(home.control) / name, lambda x: x.strip().lower() == domain)
    if settings.directory != Path(home.domains) / domain:
        shutil.rmtree(settings.directory, ignore_errors=True)
    if settings.base_path:
        shutil.rmtree(Path(settings.base_path) / domain, ignore_errors=True)


def is_etrn_domain(home, domain: str) -> bool:
    """Blocking: whether etrnhosts lists *domain* (a ``-t`` domain, not in the store)."""
    try:
        lines = (Path(home.control) / ETRNHOSTS).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return False
    return any(line.strip().lower() == domain for line in lines)


# -- cluster: dbinfo / mcdinfo and host_table ---------------------------------

def local_hostid(env: Mapping[str, str]) -> str | None:
    """``HOSTID`` or ``control/hostid``, else what gethostid(3) gives: the
    4 bytes of /etc/hostid, or the host's IPv4 address with halves swapped."""
    hostid = cluster.local_hostid(env)
    if hostid:
        return hostid
    try:
        raw = Path("/etc/hostid").read_bytes()[:4]
        if len(raw) == 4:
            return format(struct.unpack("=I", raw)[0], "x")
    except OSError:
        pass
    try:
        addr = struct.unpack("!I", socket.inet_aton(socket.gethostbyname(socket.gethostname())))[0]
    except OSError:
        return None
    return format(((addr << 16) | (addr >> 16)) & 0xFFFFFFFF, "x")


async def add_dbinfo(admin, domain: str, spec: ClusterSpec, env: Mapping[str, str],
                     say) -> list[McdEntry]:
    """Upstream's ``-D`` step: this node in host_table (``vhostid_insert``)
    and the domain's record in dbinfo and the mcdinfo file (``dbinfoAdd``),
    with this node's address as mdahost; the records after it."""
    from indimail.cli.dbinfo import _local_ip, sync_mcdinfo, write_from_table

    store, home = admin.store, admin.home
    env = {**env, "CONTROLDIR": env.get("CONTROLDIR") or str(home.control)}
    path = mcdinfo_path(home, env).absolute()
    entries = await sync_mcdinfo(store, path)
    mdahost, hostid = await admin._thread(lambda: (_local_ip(Path(home.control)),
                                                   local_hostid(env)))
    kind = "Clustered" if spec.distributed else "NonClustered"
    if hostid is None:
        raise OptionError("failed to get local hostid", 111)
    if any(e.domain == domain and e.mdahost == mdahost for e in entries):
        raise OptionError(f"Failed to add {kind} domain {domain}: mdahost {mdahost} exists", 111)
    if await store.host_ip(hostid) is None:
        await store.set_host_ip(hostid, mdahost)
    entries = entries + [McdEntry(domain, spec.distributed, spec.server, mdahost, spec.port,
                                  spec.use_ssl, spec.database, spec.user, spec.password)]
    await store.set_dbinfo(str(path), entries, admin.clock())
    entries = await write_from_table(store, path)
    say(f"Added domain {domain}\n")
    if hasattr(store, "domain_entries"):     # a RoutedStore: route the postmaster with it
        store.entries = entries
    return entries


__all__ = ["ClusterSpec", "DomainOptions", "DomainSettings", "OptionError", "add_dbinfo",
           "assign_entries", "autoturn_dir", "check_bounce", "domain_settings",
           "drop_domain_files", "etrn_domain_known", "give", "is_etrn_domain",
           "write_domain_files"]
