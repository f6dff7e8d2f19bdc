"""vadddomain: add a virtual domain and its postmaster (IndiMail's command).

The options are upstream vadddomain's; :mod:`indimail.vdomain.domainopts`
says what each one changes.  ``-h`` (the postmaster's password hash) is ours.
"""

from __future__ import annotations

import ipaddress
import pwd
import sys

from twisted.internet import threads

from indimail.vdomain.admin import AdminError, hash_scheme, read_password, run_cli
from indimail.vdomain.domainopts import ClusterSpec, DomainOptions

USAGE = """usage: vadddomain [--home dir] [options] virtual_domain [postmaster password]
options: -V print version number
         -v verbose
         -q quota_in_bytes (sets the quota for postmaster account)
         -l level (users per level)
         -b bounce mail for non matching users (the default)
         -C (Do recipient check for this domain)
         -e [email_address|maildir] (forwards all non matching user to this address [*])
         -u user (sets the uid/gid based on a user in /etc/passwd)
         -B basepath Specify the base directory for postmaster's home directory
         -d dir (sets the dir to use for this domain)
         -i uid (sets the uid to use for this domain)
         -g gid (sets the gid to use for this domain)
         -a sets the account to use APOP, default is POP
         -f Sets the Domain with VFILTER capability
         -t Sets the Domain for ETRN/ATRN
         -T ipaddr Sets the Domain for AUTOTURN from IP ipaddr
         -O optimize adding, for bulk adds set this for all
            except the last one
         -h hash (postmaster's password hash: DES MD5 SHA-256 SHA-512)
         -D database (adds a clustered domain, extra options apply as below)
         -S SqlServer host/IP
         -U Database User
         -P Database Password
         -p Database Port
         -s 0|1 use SSL for the database (default 1)
         -c Add domain as a clustered domain"""

SHORTOPTS = "VvatT:q:l:bB:e:u:Ci:g:d:OfD:S:U:P:p:s:ch:"


def _usage(message: str = "") -> AdminError:
    return AdminError(f"{message}\n{USAGE}" if message else USAGE, 100)


def _number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _usage(f"{value}: not a number") from None


VALUES = {"-q": "quota", "-e": "bounce", "-B": "base_path", "-d": "base_dir"}
FLAGS = {"-v": "verbose", "-C": "chk_rcpt", "-f": "vfilter", "-O": "optimize"}
NUMBERS = {"-l": "users_per_level", "-i": "uid", "-g": "gid"}


def parse_options(opts) -> tuple[DomainOptions, str]:
    """(DomainOptions, password hash scheme) of vadddomain's *opts*, or AdminError(100)."""
    o = DomainOptions()
    scheme = "SHA512-CRYPT"
    db: dict = {}
    for key, value in opts:
        if key in VALUES:
            setattr(o, VALUES[key], value)
        elif key in FLAGS:
            setattr(o, FLAGS[key], True)
        elif key in NUMBERS:
            setattr(o, NUMBERS[key], _number(value))
        elif key == "-b":
            o.bounce = None
        elif key == "-u":
            try:
                entry = pwd.getpwnam(value)
            except KeyError:
                raise AdminError(f"user {value} not found in /etc/passwd", 100) from None
            o.uid, o.gid, o.base_dir = entry.pw_uid, entry.pw_gid, entry.pw_dir
        elif key in ("-t", "-T"):
            o.etrn = 1 if key == "-t" else 2
            if key == "-T":
                try:
                    o.ipaddr = str(ipaddress.ip_address(value))
                except ValueError:
                    raise _usage(f"{value}: not an IP address") from None
        elif key == "-h":
            scheme = hash_scheme(value)
        elif key in ("-D", "-S", "-U", "-P"):
            db[key] = value
        elif key in ("-p", "-s"):
            db[key] = _number(value)
        elif key == "-c":
            db["-c"] = 1
        # -a (APOP): upstream's iadduser gives every user pw_uid 1 regardless
    o.users_per_level = max(o.users_per_level, 0)
    if o.etrn and o.base_path:
        raise _usage("option -B not valid for ETRN/ATRN/AUTORUN")
    if "-D" in db or "-c" in db:
        if not all(k in db for k in ("-S", "-D", "-U", "-P", "-p")):
            raise _usage("specify sqlserver, database, dbuser, dbpass and dbport")
        o.cluster = ClusterSpec(db["-D"], db["-S"], db["-U"], db["-P"], db["-p"],
                                bool(db.get("-s", 1)), db.get("-c", 0))
    return o, scheme


def _version() -> str:
    from importlib import metadata
    try:
        return metadata.version("indimail")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _body(admin, opts, args):
    if any(key == "-V" for key, _ in opts):
        sys.stdout.write(f"vadddomain: version {_version()}\n")
        return 0
    o, scheme = parse_options(opts)
    if not args:
        raise _usage("Domain not specified")
    domain = args[0]
    password = args[1] if len(args) > 1 else None
    if password is None and not o.etrn:
        password = await threads.deferToThread(read_password, "vadddomain",
                                               f"postmaster@{domain}")
    await admin.add_domain(domain, password, scheme=scheme, options=o,
                           say=sys.stdout.write)
    if o.etrn:
        return 0        # upstream runs no handle for an ETRN/AUTOTURN domain
    return domain.strip().lower()


def main(argv=None) -> None:
    run_cli("vadddomain", USAGE, SHORTOPTS, _body, argv)


if __name__ == "__main__":
    main()
