"""Changes to existing domains and users: vaddaliasdomain, vmoddomain,
vmoduser, vsetuserquota, vrenameuser (upstream's C programs of those names).

Each function takes an :class:`~indimail.vdomain.admin.Admin` (home, store,
thread pool) and raises :class:`~indimail.vdomain.admin.AdminError` with the
text the command prints.  SQL runs in the store's pool, file work and hashing
in threads.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from indimail.config.files import write_atomic
from indimail.config.init import add_domain_entries, check_domain

from . import flags as F
from .admin import AdminError, make_maildir, make_password, split_address
from .maildirsize import MaildirSize
from .quota import Quota, QuotaError, format_quota, parse_quota
from .records import VUser
from .store import DomainExists, StoreError, UserExists
from .vdelivermail import BOUNCE_ALL, DELETE_ALL

DOMAIN_LIMITS = ".domain_limits"

# vmoduser's flag options -> pw_gid bits (vmoduser.c get_options)
VMODUSER_FLAGS = {"-u": F.NO_DIALUP, "-d": F.NO_PASSWD_CHNG, "-p": F.NO_POP,
                  "-w": F.NO_WEBMAIL, "-s": F.NO_SMTP, "-i": F.NO_IMAP,
                  "-b": F.BOUNCE_MAIL, "-r": F.NO_RELAY, "-o": F.V_OVERRIDE,
                  "-a": F.QA_ADMIN, "-0": F.V_USER0, "-1": F.V_USER1,
                  "-2": F.V_USER2, "-3": F.V_USER3}


# -- alias domains -------------------------------------------------------------

async def add_alias_domain(admin, new: str, old: str) -> None:
    """vaddaliasdomain: *new* becomes another name of the real domain *old*:
    the aliasdomain row, its control lines, and ``domains/<new>`` as a
    symbolic link to the real domain's directory (as upstream does)."""
    try:
        new = check_domain(new)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    old = old.strip().lower()
    real = await admin.store.real_domain(old)
    if real is None:
        raise AdminError(f"failed to create alias domain {new} for domain {old}: "
                         f"{old}: No such domain")
    try:
        await admin.store.add_alias_domain(new, real)
    except (DomainExists, StoreError) as exc:
        raise AdminError(f"failed to create alias domain {new} for domain {old}: {exc}") from None
    await admin._thread(_alias_files, admin, new, real)


def _alias_files(admin, alias: str, real: str) -> None:
    add_domain_entries(admin.home, alias)
    link = admin.domain_dir(alias)
    if link.is_dir() and not link.is_symlink() and not any(link.iterdir()):
        link.rmdir()
    if not link.exists():
        link.symlink_to(admin.domain_dir(real))
    admin._newu()


# -- vmoddomain ----------------------------------------------------------------

def check_handler(handler: str) -> None:
    """The forms vmoddomain accepts for the non-existent-user instruction."""
    if handler in (BOUNCE_ALL, DELETE_ALL):
        return
    if handler.startswith("/"):
        if not all(os.path.isdir(os.path.join(handler, d)) for d in ("new", "cur", "tmp")):
            raise AdminError(f"{handler}: not a Maildir")
    elif "@" not in handler and handler.count(":") != 2:
        raise AdminError(f"Invalid SMTPROUTE/QMTPROUTE Specification [{handler}]")


async def modify_domain(admin, domain: str, *, handler: str | None = None,
                        use_vfilter: int | None = None,
                        domain_limits: int | None = None) -> None:
    """vmoddomain: rewrite ``.qmail-default`` (``-h`` with ``-f 0|1``: the
    vdelivermail or vfilter line) and switch domain limits (``-l 0|1``: the
    ``.domain_limits`` file of the domain directory)."""
    domain = domain.strip().lower()
    if await admin.store.real_domain(domain) != domain:
        raise AdminError(f"{domain}: domain does not exist")
    directory = admin.domain_dir(domain)
    if handler is not None:
        await admin._thread(check_handler, handler)
        program = admin.vdelivermail
        if use_vfilter == 1:
            program = str(Path(program).parent / "vfilter")
        await admin._thread(write_atomic, directory / ".qmail-default",
                            f"| {program} '' {handler}\n".encode(), 0o600)
    if domain_limits in (0, 1):
        await admin._thread(_domain_limits_flag, directory / DOMAIN_LIMITS, domain_limits)


def _domain_limits_flag(path: Path, on: int) -> None:
    if on:
        path.touch(mode=0o600, exist_ok=True)
    else:
        path.unlink(missing_ok=True)


def limits_enabled(admin, domain: str, env) -> bool:
    """Whether vlimits apply to *domain* (``.domain_limits`` or DOMAIN_LIMITS set)."""
    return bool(env.get("DOMAIN_LIMITS")) or (admin.domain_dir(domain) / DOMAIN_LIMITS).exists()


# -- vmoduser ------------------------------------------------------------------

@dataclass
class UserChange:
    """What vmoduser was asked to change."""

    gecos: str | None = None
    password: str | None = None      # clear text, hashed with scheme
    encrypted: str | None = None     # -e: stored as given
    scheme: str = "SHA512-CRYPT"
    cram: bool = False
    quota: str | None = None
    set_flags: int = 0
    toggle: bool = False
    clear_flags: bool = False
    toggle_active: bool = False
    date_format: str | None = None

    @property
    def changes_row(self) -> bool:
        return any((self.gecos is not None, self.password is not None,
                    self.encrypted is not None, self.quota is not None,
                    self.set_flags, self.clear_flags))


def new_quota(current: str, request: str) -> str:
    """vmoduser/vsetuserquota's pw_shell: ``NOQUOTA``, an absolute size, or
    ``+size``/``-size`` relative to the current one.  The message count
    after the comma is kept (given in *request*, or the current one).
    QUIRK: upstream appends the old count without its comma; we keep it."""
    if request.startswith("NOQUOTA"):
        return "NOQUOTA"
    try:
        cur = parse_quota(current or "NOQUOTA")
        asked = parse_quota(request.lstrip("+-"))
    except QuotaError:
        raise AdminError(f"invalid quota specification [{request}]") from None
    size = {"+": cur.size + asked.size, "-": cur.size - asked.size}.get(request[:1], asked.size)
    if size < 0:
        raise AdminError(f"invalid quota specification [{request}]")
    count = asked.count if "," in request else cur.count
    return format_quota(Quota(size, count))


async def find_user(admin, address: str) -> VUser:
    """The user vmoduser works on, with its message for an unknown user."""
    return await admin._user(address, missing="no such user {name}@{domain}")


async def modify_user(admin, address: str, change: UserChange, *,
                      remote_ip: str = "127.0.0.1", env=None) -> VUser:
    """vmoduser: gecos, password, quota, pw_gid flags, the active/inactive
    toggle (``-n``) and the date-folder format (``-D``)."""
    env = env or {}
    user = await find_user(admin, address)
    name, real = user.pw_name, user.pw_domain
    if change.quota is not None and not user.has(F.V_OVERRIDE) and \
            limits_enabled(admin, real, env):
        limits = await admin.store.get_limits(real)
        if limits.perm_defaultquota & 0x02:      # VLIMIT_DISABLE_MODIFY
            raise AdminError(f"quota modification not allowed for {address}")
    gid = user.pw_gid
    if change.clear_flags:
        gid = 0
    elif change.set_flags:
        gid = gid ^ change.set_flags if change.toggle else gid | change.set_flags
    updated = user.with_(pw_gid=gid)
    if change.gecos is not None:
        updated = updated.with_(pw_gecos=change.gecos)
    if change.encrypted is not None:
        updated = updated.with_(pw_passwd=change.encrypted)
    elif change.password is not None:
        updated = updated.with_(pw_passwd=await admin._thread(
            make_password, change.password, change.scheme, cram=change.cram))
    if change.quota is not None:
        updated = updated.with_(pw_shell=new_quota(user.pw_shell, change.quota))
    if change.changes_row:
        await admin.store.update_user(updated)
    if change.toggle_active:
        await admin.store.set_inactive(name, real, not user.inactive)
        service = "ACTI" if user.inactive else "INAC"
        await admin.store.record_auth(name, real, service, remote_ip, admin.clock())
        if user.inactive:
            await admin._thread(make_maildir, Path(user.pw_dir))
        updated = updated.with_(inactive=not user.inactive)
    if change.quota is not None:
        await admin._thread(_recalc, Path(updated.pw_dir) / "Maildir", updated.quota,
                            admin.clock())
    if change.password is not None or change.encrypted is not None:
        await admin.store.record_auth(name, real, "pass", remote_ip, admin.clock())
    if change.date_format is not None:
        await admin._thread(write_atomic, Path(updated.pw_dir) / "Maildir" / "folder.dateformat",
                            change.date_format.encode() + b"\n", 0o644)
    return updated


def _recalc(maildir: Path, quota: Quota, now: float) -> None:
    """Rewrite maildirsize for the new quota (``recalc_quota(..., 2)``)."""
    if not maildir.is_dir():
        return
    if quota.size == 0 and quota.count == 0:
        (maildir / "maildirsize").unlink(missing_ok=True)
        return
    MaildirSize(maildir).usage(quota, now)


async def set_user_quota(admin, address: str, quota: str, env=None) -> VUser:
    """vsetuserquota: the user's pw_shell quota, honouring the domain's
    perm_defaultquota when domain limits are on."""
    return await modify_user(admin, address, UserChange(quota=quota), env=env)


# -- vrenameuser ---------------------------------------------------------------

async def rename_user(admin, old: str, new: str) -> VUser:
    """vrenameuser: the row under the new name (possibly another domain),
    its home directory moved, and its per-user rows (valias, vfilter,
    hostcntrl, lastauth, userquota) carried over."""
    old_name, old_domain = split_address(old)
    new_name, new_domain = split_address(new)
    old_real = await admin.store.real_domain(old_domain)
    if old_real is None:
        raise AdminError(f"{old_domain}: No such domain")
    new_real = await admin.store.real_domain(new_domain)
    if new_real is None:
        raise AdminError(f"{new_domain}: No such domain")
    user = await admin.store.get_user(old_name, old_real)
    if user is None:
        raise AdminError(f"{old_name}@{old_real}: No such user")
    if await admin.store.get_user(new_name, new_real) is not None:
        raise AdminError(f"username {new_name}@{new_real} exists")
    old_dir = Path(user.pw_dir)
    if new_real == old_real:
        new_dir = old_dir.parent / new_name
    else:
        new_dir = admin.domain_dir(new_real) / new_name
    moved = user.with_(pw_name=new_name, pw_domain=new_real, pw_dir=str(new_dir))
    try:
        await admin.store.rename_user(user, moved)
    except UserExists as exc:
        raise AdminError(str(exc)) from None
    await admin._thread(_move_dir, old_dir, new_dir)
    return moved


def _move_dir(old: Path, new: Path) -> None:
    if old.exists() and not new.exists():
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(old), str(new))
    elif not new.exists():
        make_maildir(new)


def parse_vmoduser(opts) -> UserChange:
    """A UserChange from vmoduser's getopt pairs."""
    from .admin import password_options
    change = UserChange()
    pw = password_options([(k, v) for k, v in opts if k in ("-m", "-C")])
    change.scheme, change.cram = pw["scheme"], pw["cram"]
    for key, value in opts:
        if key == "-c":
            change.gecos = value
        elif key == "-e":
            change.encrypted = value
        elif key == "-P":
            change.password = value
        elif key == "-q":
            change.quota = value
        elif key == "-t":
            change.toggle = True
        elif key == "-x":
            change.clear_flags = True
        elif key == "-n":
            change.toggle_active = True
        elif key == "-D":
            change.date_format = value
        elif key in VMODUSER_FLAGS:
            change.set_flags |= VMODUSER_FLAGS[key]
    return change


__all__ = ["add_alias_domain", "modify_domain", "modify_user", "find_user", "set_user_quota",
           "rename_user", "UserChange", "parse_vmoduser", "new_quota", "limits_enabled",
           "format_quota"]
