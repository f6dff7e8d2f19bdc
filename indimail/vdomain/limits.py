"""vlimit: a domain's vlimits row, changed by options and shown as upstream does.

``perm_maillist`` packs three sets of permission bits (mailing list, its
users, its moderators), 3 bits each, as upstream ``vset_limits`` stores them.
"""

from __future__ import annotations

import time
from dataclasses import replace

from .quota import QuotaError, parse_quota
from .records import VLimits

DENY_CREATE, DENY_MODIFY, DENY_DELETE = 0x01, 0x02, 0x04
DENY_ALL = DENY_CREATE | DENY_MODIFY | DENY_DELETE
BITS = 3

# -g letters -> vlimits columns
GID_LETTERS = {"u": "disable_dialup", "d": "disable_passwordchanging", "p": "disable_pop",
               "s": "disable_smtp", "w": "disable_webmail", "i": "disable_imap",
               "r": "disable_relay"}
# permission options -> (column, shift inside the column)
PERM_OPTIONS = {"-p": ("perm_account", 0), "-a": ("perm_alias", 0),
                "-f": ("perm_forward", 0), "-r": ("perm_autoresponder", 0),
                "-l": ("perm_maillist", 0), "-u": ("perm_maillist", BITS),
                "-o": ("perm_maillist", 2 * BITS), "-x": ("perm_quota", 0),
                "-z": ("perm_defaultquota", 0)}
COUNT_OPTIONS = {"-P": "maxpopaccounts", "-A": "maxaliases", "-F": "maxforwards",
                 "-R": "maxautoresponders", "-L": "maxmailinglists",
                 "-M": "maxmsgcount", "-m": "defaultmaxmsgcount"}


class LimitError(ValueError):
    """An option value vlimit cannot use; the text says which."""


def perm_bits(letters: str) -> int:
    """``a`` all, ``c`` create, ``m`` modify, ``d`` delete -> DENY_* bits."""
    bits = 0
    for ch in letters:
        bits |= {"a": DENY_ALL, "c": DENY_CREATE, "m": DENY_MODIFY, "d": DENY_DELETE}.get(ch, 0)
    return bits


def _expiry(text: str, what: str) -> int:
    if text == "-1":
        return -1
    try:
        if len(text) != 14:
            raise ValueError
        return int(time.mktime(time.strptime(text, "%d%m%Y%H%M%S")))
    except ValueError:
        raise LimitError(f"Invalid {what} expiry date [{text}]") from None


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise LimitError(f"vlimits: {what}: invalid number [{text}]") from None


def apply_options(limits: VLimits, opts, now: float) -> VLimits:
    """The limits after vlimit's setting options (``-e -n -t -N -Q -q -M -m
    -P -A -F -R -L -g`` and the permission options)."""
    changes: dict = {}
    keys = [k for k, _ in opts]
    if "-e" in keys and "-n" in keys:
        raise LimitError("must supply either Domain expiry date or Number of days")
    if "-t" in keys and "-N" in keys:
        raise LimitError("must supply either Password expiry date or Number of days")
    for key, value in opts:
        if key == "-e":
            changes["domain_expiry"] = _expiry(value, "domain")
        elif key == "-n":
            changes["domain_expiry"] = int(now) + _int(value, "days") * 86400
        elif key == "-t":
            changes["passwd_expiry"] = _expiry(value, "password")
        elif key == "-N":
            changes["passwd_expiry"] = int(now) + _int(value, "days") * 86400
        elif key in ("-Q", "-q"):
            column = "diskquota" if key == "-Q" else "defaultquota"
            if key == "-q" and value.startswith("NOQUOTA"):
                changes[column] = -1
                continue
            try:
                changes[column] = parse_quota(value).size
            except QuotaError:
                raise LimitError(f"vlimits: {column}: invalid quota [{value}]") from None
        elif key in COUNT_OPTIONS:
            changes[COUNT_OPTIONS[key]] = _int(value, COUNT_OPTIONS[key])
        elif key == "-g":
            flags = {column: 0 for column in GID_LETTERS.values()}
            for ch in value:
                if ch == "x":
                    flags = {column: 0 for column in GID_LETTERS.values()}
                elif ch in GID_LETTERS:
                    flags[GID_LETTERS[ch]] = 1
            changes.update(flags)
        elif key in PERM_OPTIONS:
            column, shift = PERM_OPTIONS[key]
            current = changes.get(column, getattr(limits, column))
            current &= ~(DENY_ALL << shift)
            changes[column] = current | (perm_bits(value) << shift)
    return replace(limits, **changes)


def _perm(bits: int, delete: bool = True) -> str:
    text = ("DENY_CREATE  " if bits & DENY_CREATE else "ALLOW_CREATE ") + \
           ("DENY_MODIFY  " if bits & DENY_MODIFY else "ALLOW_MODIFY ")
    if delete:
        text += "DENY_DELETE  " if bits & DENY_DELETE else "ALLOW_DELETE "
    return text


def _date(stamp: int) -> str:
    return "Never Expires\n" if stamp == -1 else time.ctime(stamp) + "\n"


def render(limits: VLimits) -> str:
    """``vlimit -s`` (upstream vlimit.c's layout, which the seed shows)."""
    out = [f"Domain Expiry Date   : {_date(limits.domain_expiry)}",
           f"Password Expiry Date : {_date(limits.passwd_expiry)}",
           f"Max Domain Quota     : {limits.diskquota}\n",
           f"Max Domain Messages  : {limits.maxmsgcount}\n",
           "Default User Quota   : unlimited\n" if limits.defaultquota == -1 else
           f"Default User Quota   : {limits.defaultquota}\n",
           f"Default User Messages: {limits.defaultmaxmsgcount}\n",
           f"Max Pop Accounts     : {limits.maxpopaccounts}\n",
           f"Max Aliases          : {limits.maxaliases}\n",
           f"Max Forwards         : {limits.maxforwards}\n",
           f"Max Autoresponders   : {limits.maxautoresponders}\n",
           f"Max Mailinglists     : {limits.maxmailinglists}\n",
           "GID Flags:\n"]
    for column, name in (("disable_imap", "NO_IMAP"), ("disable_smtp", "NO_SMTP"),
                         ("disable_pop", "NO_POP"), ("disable_webmail", "NO_WEBMAIL"),
                         ("disable_passwordchanging", "NO_PASSWD_CHNG"),
                         ("disable_relay", "NO_RELAY"), ("disable_dialup", "NO_DIALUP")):
        if getattr(limits, column):
            out.append(f"  {name}\n")
    maillist = limits.perm_maillist
    out += ["Flags for non postmaster accounts:\n",
            f"  pop account           : {_perm(limits.perm_account)}\n",
            f"  alias                 : {_perm(limits.perm_alias)}\n",
            f"  forward               : {_perm(limits.perm_forward)}\n",
            f"  autoresponder         : {_perm(limits.perm_autoresponder)}\n",
            f"  mailinglist           : {_perm(maillist & DENY_ALL)}\n",
            f"  mailinglist users     : {_perm((maillist >> BITS) & DENY_ALL)}\n",
            f"  mailinglist moderators: {_perm((maillist >> 2 * BITS) & DENY_ALL)}\n",
            f"  domain quota          : {_perm(limits.perm_quota)}\n",
            f"  default quota         : {_perm(limits.perm_defaultquota, False)}\n"]
    return "".join(out)
