"""IndiMail's tables, as ``indimail.h`` lays them out for MySQL, and their SQLite form.

The MySQL layouts are IndiMail's own, so a database created by IndiMail and
one created here are interchangeable.  SQLite gets the same columns through a
small translation: ``on update CURRENT_TIMESTAMP`` is dropped (the store sets
timestamps itself), ``unique index`` becomes a UNIQUE constraint and plain
indexes become CREATE INDEX statements.
"""

from __future__ import annotations

import re

_TS = "timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP NOT NULL"

# IndiMail's pw_passwd is char(128); the seed's SCRAM forms (with the
# crypt hash for PLAIN appended, and -C's hex salted password and clear
# text) run to ~280 characters, so tables we create get room for them.
# Existing tables are left alone; the store refuses a form that does not
# fit rather than let MySQL truncate it (see VStore.check_passwd_width).
PASSWD_WIDTH = 512
INDIMAIL_PASSWD_WIDTH = 128
# IndiMail's pw_dir is char(156); a home below a deep path (a hashed layout
# under a long base) needs more.  Only tables we create get the width.
DIR_WIDTH = 255

USER_LAYOUT = (
    "pw_name char(40) not null, pw_domain char(67) not null, "
    f"pw_passwd varchar({PASSWD_WIDTH}) not null, "
    f"pw_uid int, pw_gid int, pw_gecos char(48) not null, pw_dir varchar({DIR_WIDTH}), "
    "pw_shell char(30), "
    f"{_TS}, primary key (pw_name, pw_domain), index pw_gecos (pw_gecos(25)), index pw_uid (pw_uid)")

LAYOUTS: dict[str, str] = {
    "indimail": USER_LAYOUT,
    "indibak": USER_LAYOUT,
    "relay": "email char(96) not null, ipaddr char(18) not null, timestamp int, "
             "unique index (email, ipaddr), index(ipaddr), index(timestamp)",
    "hostcntrl": "pw_name char(40) not null, pw_domain char(67) not null, "
                 "pw_passwd char(128) not null, host char(64) not null, "
                 "timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL, "
                 "primary key (pw_name, pw_domain)",
    "host_table": f"host char(64) not null, ipaddr char(16) not null, {_TS}, "
                  "primary key (host), index ipaddr (ipaddr)",
    "smtp_port": f"host char(64) not null, src_host char(64) not null, "
                 f"domain char(64) not null, port int, {_TS}, "
                 "primary key (domain, host, src_host)",
    "dbinfo": "filename char(128) not null, domain char(64) not null, distributed int not null, "
              "server char(28) not null, mdahost char(28) not null, port int not null, "
              "use_ssl int not null default 0, dbname char(28) not null, user char(28) not null, "
              f"passwd char(28) not null, {_TS}, "
              "unique index (filename, domain, server, mdahost, port, dbname, user, passwd), "
              "index (domain)",
    "vlimits": "domain CHAR(67) NOT NULL, "
               "domain_expiry INT(10) NOT NULL DEFAULT -1, passwd_expiry INT(10) NOT NULL DEFAULT -1, "
               "maxpopaccounts INT(10) NOT NULL DEFAULT -1, maxaliases INT(10) NOT NULL DEFAULT -1, "
               "maxforwards INT(10) NOT NULL DEFAULT -1, maxautoresponders INT(10) NOT NULL DEFAULT -1, "
               "maxmailinglists INT(10) NOT NULL DEFAULT -1, "
               "diskquota BIGINT UNSIGNED NOT NULL DEFAULT 0, maxmsgcount BIGINT UNSIGNED NOT NULL DEFAULT 0, "
               "defaultquota BIGINT NOT NULL DEFAULT 0, defaultmaxmsgcount BIGINT UNSIGNED NOT NULL DEFAULT 0, "
               "disable_pop TINYINT(1) NOT NULL DEFAULT 0, disable_imap TINYINT(1) NOT NULL DEFAULT 0, "
               "disable_dialup TINYINT(1) NOT NULL DEFAULT 0, "
               "disable_passwordchanging TINYINT(1) NOT NULL DEFAULT 0, "
               "disable_webmail TINYINT(1) NOT NULL DEFAULT 0, disable_relay TINYINT(1) NOT NULL DEFAULT 0, "
               "disable_smtp TINYINT(1) NOT NULL DEFAULT 0, perm_account TINYINT(2) NOT NULL DEFAULT 0, "
               "perm_alias TINYINT(2) NOT NULL DEFAULT 0, perm_forward TINYINT(2) NOT NULL DEFAULT 0, "
               "perm_autoresponder TINYINT(2) NOT NULL DEFAULT 0, perm_maillist TINYINT(4) NOT NULL DEFAULT 0, "
               "perm_quota TINYINT(2) NOT NULL DEFAULT 0, perm_defaultquota TINYINT(2) NOT NULL DEFAULT 0, "
               f"{_TS.replace('NOT NULL', 'not null')}, primary key(domain)",
    "valias": f"alias char(40) not null, domain char(67) not null, valias_line char(190) not null, "
              f"{_TS}, unique index(alias, domain, valias_line), index (alias, domain)",
    "vfilter": "emailid char(107) not null, filter_no smallint not null, filter_name char(32) not null, "
               "header_name smallint not null, comparision tinyint not null, keyword char(64) not null, "
               "destination char(156) not null, bounce_action char(64) not null, "
               f"mailing_list tinyint not null, {_TS}, primary key(emailid, filter_no), "
               "unique index (emailid, header_name, comparision, keyword, destination)",
    "lastauth": "user char(40) not null, domain char(67) not null, service char(10) not null, "
                "remote_ip char(16) not null, quota int not null, gecos char(48) not null, "
                "timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL, "
                "primary key (user, domain, service), index gecos (gecos), index quota (quota), "
                "index timestamp (timestamp)",
    "userquota": "user char(40) not null, domain char(67) not null, quota bigint unsigned not null, "
                 "timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL, "
                 "primary key(user, domain), index quota (quota)",
    "aliasdomain": f"alias char(64) not null, domain char(67), {_TS}, primary key(alias)",
    "mgmtaccess": "user char(32) not null, pass char(128) not null, pw_uid int not null, "
                  "pw_gid int not null, lastaccess int not null, lastupdate int not null, "
                  "day char(2) not null, attempts int not null, status char(2) not null, "
                  "zztimestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP not null, "
                  "unique index(user)",
    "vpriv": f"user char(32) not null, program char(64) not null, cmdswitches char(128), {_TS}, "
             "primary key(user, program)",
    "ip_alias_map": f"ipaddr char(18) not null, domain char(67), {_TS}, primary key(ipaddr)",
    "atrn_map": f"pw_name char(40) not null, pw_domain char(67) not null, domain_list char(67), "
                f"{_TS}, unique index atrnmap (pw_name, pw_domain, domain_list)",
    "dir_control": "domain char(67) not null, cur_users int, level_cur int, level_max int, "
                   "level_start0 int, level_start1 int, level_start2 int, "
                   "level_end0 int, level_end1 int, level_end2 int, "
                   "level_mod0 int, level_mod1 int, level_mod2 int, "
                   "level_index0 int , level_index1 int, level_index2 int, the_dir char(156), "
                   f"{_TS}, unique index (domain)",
}

# Control-file tables (badmailfrom, badrcptto, spamdb, ...): BADMAILFROM_TABLE_LAYOUT.
CONTROL_LAYOUT = f"email char(64) not null, {_TS}, primary key (email)"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(name: str) -> str:
    """*name* when it is safe to put in SQL as a table name; ValueError otherwise.

    Control files such as ``spamdb`` or ``badmailfrom`` name their table, and a
    dot or dash in the name would otherwise reach the SQL text."""
    if not _NAME.match(name) or len(name) > 64:
        raise ValueError(f"not a table name: {name!r}")
    return name


def split_items(layout: str) -> list[str]:
    """The comma-separated items of a layout, commas inside parentheses kept."""
    items, depth, current = [], 0, []
    for ch in layout:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        items.append("".join(current).strip())
    return items


def mysql_ddl(table: str, layout: str) -> list[str]:
    """IndiMail's own statement for *table*."""
    return [f"CREATE TABLE IF NOT EXISTS {check_name(table)} ({layout})"]


_INDEX = re.compile(r"^(unique\s+)?index\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\((.*)\)$", re.I | re.S)
_PREFIX_LEN = re.compile(r"\(\d+\)")
_ON_UPDATE = re.compile(r"\s+on\s+update\s+CURRENT_TIMESTAMP", re.I)


def sqlite_ddl(table: str, layout: str) -> list[str]:
    """The same table for SQLite: columns and keys kept, indexes as statements."""
    check_name(table)
    columns, indexes = [], []
    for n, item in enumerate(split_items(layout)):
        match = _INDEX.match(item)
        if match:
            cols = _PREFIX_LEN.sub("", match.group(3))
            if match.group(1):
                columns.append(f"UNIQUE ({cols})")
            else:
                name = f"{table}_{match.group(2) or 'i%d' % n}"
                indexes.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})")
        elif item.lower().startswith("primary key"):
            columns.append(_PREFIX_LEN.sub("", item))
        else:
            columns.append(_ON_UPDATE.sub("", item))
    return [f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)})", *indexes]
