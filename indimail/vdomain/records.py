"""Rows of the store as values: users, limits, filters."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .quota import Quota, parse_quota


@dataclass(frozen=True)
class VUser:
    """A row of ``indimail`` (active) or ``indibak`` (``inactive`` True)."""

    pw_name: str
    pw_domain: str
    pw_passwd: str = ""
    pw_uid: int = 0
    pw_gid: int = 0
    pw_gecos: str = ""
    pw_dir: str = ""
    pw_shell: str = "NOQUOTA"
    inactive: bool = False

    @property
    def address(self) -> str:
        return f"{self.pw_name}@{self.pw_domain}"

    @property
    def quota(self) -> Quota:
        return parse_quota(self.pw_shell or "NOQUOTA")

    def has(self, flag: int) -> bool:
        """Whether the pw_gid bit *flag* is set."""
        return bool((self.pw_gid or 0) & flag)

    def with_(self, **changes) -> "VUser":
        return replace(self, **changes)


USER_COLUMNS = ("pw_name", "pw_domain", "pw_passwd", "pw_uid", "pw_gid",
                "pw_gecos", "pw_dir", "pw_shell")


@dataclass(frozen=True)
class VLimits:
    """A domain's ``vlimits`` row; a domain without one gets these defaults."""

    domain: str
    domain_expiry: int = -1
    passwd_expiry: int = -1
    maxpopaccounts: int = -1
    maxaliases: int = -1
    maxforwards: int = -1
    maxautoresponders: int = -1
    maxmailinglists: int = -1
    diskquota: int = 0
    maxmsgcount: int = 0
    defaultquota: int = 0
    defaultmaxmsgcount: int = 0
    disable_pop: int = 0
    disable_imap: int = 0
    disable_dialup: int = 0
    disable_passwordchanging: int = 0
    disable_webmail: int = 0
    disable_relay: int = 0
    disable_smtp: int = 0
    perm_account: int = 0
    perm_alias: int = 0
    perm_forward: int = 0
    perm_autoresponder: int = 0
    perm_maillist: int = 0
    perm_quota: int = 0
    perm_defaultquota: int = 0


LIMIT_COLUMNS = tuple(f.name for f in fields(VLimits))


@dataclass(frozen=True)
class VFilter:
    """A ``vfilter`` row: one rule of a user's filter."""

    emailid: str
    filter_no: int
    filter_name: str
    header_name: int
    comparision: int
    keyword: str
    destination: str
    bounce_action: str = ""
    mailing_list: int = 0


FILTER_COLUMNS = tuple(f.name for f in fields(VFilter))
