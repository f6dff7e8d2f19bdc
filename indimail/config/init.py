"""``indimail init``: create a home directory, the role of IndiMail's svctool.

Idempotent: every file is created only when absent (atomically), so a second
run changes nothing, and ``--domain`` on an existing home only adds the
domain's missing lines.  ``control/me`` is written last, so a home counts as
initialised (``Home.is_initialised``) only once everything else exists.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from pathlib import Path
from typing import Mapping

from .cdb import make_control_cdb
from .control import strip_lines
from .envdir import read_envdir
from .files import write_atomic, write_new
from .home import Home
from .tcprules import compile_tcprules

TCP_SMTP = b'127.:allow,RELAYCLIENT=""\n::1:allow,RELAYCLIENT=""\n:allow\n'
SERVICES = ("smtpd", "send")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def machine_name() -> str:
    """The machine's FQDN, ``localhost`` when it has none."""
    try:
        name = socket.getfqdn().strip()
    except OSError:
        name = ""
    return name.lower() or "localhost"


def check_domain(domain: str) -> str:
    """*domain* lower-cased; ``ValueError`` when it is not a host name."""
    value = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise ValueError(f"not a valid domain name: {domain!r}")
    return value


def init_home(path: os.PathLike | str | None = None, domain: str | None = None,
              queue_count: int | None = None, env: Mapping[str, str] | None = None,
              *, hostname: str | None = None, report: list[str] | None = None) -> Home:
    """Create (or complete) a home; returns it.  *report* collects one line
    per change made; *hostname* replaces the FQDN (tests)."""
    env = os.environ if env is None else env
    domain = check_domain(domain) if domain else None
    me = hostname or machine_name()
    home = Home.from_env(path, env)
    builder = _Builder(home, env, report if report is not None else [])
    builder.build(me, queue_count)
    if domain:
        builder.add_domain(domain)
    builder.file(home.control / "me", me + "\n")
    return home


def add_domain_entries(home: Home, domain: str, report: list[str] | None = None) -> None:
    """Give *domain* its directory and its virtualdomains, rcpthosts and
    assign lines (those missing), as ``indimail init --domain`` does."""
    _Builder(home, {}, report if report is not None else []).add_domain(check_domain(domain))


def remove_domain_entries(home: Home, domain: str, report: list[str] | None = None) -> None:
    """Take *domain*'s virtualdomains, rcpthosts and assign lines out again
    (vdeldomain); the domain directory is left to the caller."""
    _Builder(home, {}, report if report is not None else []).remove_domain(check_domain(domain))


class _Builder:
    def __init__(self, home: Home, env: Mapping[str, str], report: list[str]):
        self.home, self.env, self.report = home, env, report

    def mkdir(self, path: Path, mode: int = 0o755) -> None:
        if not path.is_dir():
            path.mkdir(mode=mode, parents=True)
            self.report.append(f"created {path}/")

    def file(self, path: Path, text: str | bytes, mode: int = 0o644) -> bool:
        data = text.encode() if isinstance(text, str) else text
        if write_new(path, data, mode):
            self.report.append(f"created {path}")
            return True
        return False

    def build(self, me: str, queue_count: int | None) -> None:
        home = self.home
        for directory in (home.path, home.control, home.users, home.tcp, home.queue_base,
                          home.domains, home.variables, home.control / "defaultqueue"):
            self.mkdir(directory)
        self.mkdir(home.certs, 0o700)
        for service in SERVICES:
            self.mkdir(home.variables_for(service))
        self.control_files(me)
        self.defaultqueue(queue_count)
        self.file(home.users / "assign", ".\n")
        self.tcprules()
        self.certificate(me)
        self.queues()

    def control_files(self, me: str) -> None:
        control = self.home.control
        hosts = me + "\n" + ("" if me == "localhost" else "localhost\n")
        for name in ("defaultdomain", "defaulthost", "plusdomain"):
            self.file(control / name, me + "\n")
        self.file(control / "locals", hosts)
        self.file(control / "rcpthosts", hosts)
        self.file(control / "virtualdomains", "")
        self.file(control / "concurrencylocal", "10\n")
        self.file(control / "concurrencyremote", "20\n")

    def defaultqueue(self, queue_count: int | None) -> None:
        if queue_count is None:
            try:
                queue_count = int(self.env.get("QUEUE_COUNT", "1"))
            except ValueError:
                queue_count = 1
        if queue_count < 1:
            raise ValueError(f"queue count must be at least 1, not {queue_count}")
        directory = self.home.control / "defaultqueue"
        self.file(directory / "QUEUE_BASE", f"{self.home.queue_base}\n")
        self.file(directory / "QUEUE_START", "1\n")
        self.file(directory / "QUEUE_COUNT", f"{queue_count}\n")

    def tcprules(self) -> None:
        source = self.home.tcp / "tcp.smtp"
        self.file(source, TCP_SMTP)
        target = source.with_name("tcp.smtp.cdb")
        if not target.exists():
            compile_tcprules(source, target)
            self.report.append(f"created {target}")

    def certificate(self, me: str) -> None:
        target = self.home.certs / "servercert.pem"
        if target.exists():
            return
        from .certs import self_signed_pem  # generating a key is slow; only when needed
        now = datetime.datetime.now(datetime.timezone.utc)
        self.file(target, self_signed_pem(me, now), 0o600)

    def queues(self) -> None:
        from indimail.queue.fix import queue_fix
        from indimail.queue.layout import configured_queues

        base = {name: self.env[name] for name in ("CONFSPLIT",) if name in self.env}
        queue_env = read_envdir(self.home.control / "defaultqueue", base)
        for queue in configured_queues(queue_env, self.home.queue_base):
            changes = queue_fix(queue)
            if changes:
                self.report.append(f"queue-fix {queue.path}: {len(changes)} changes")

    def add_domain(self, domain: str) -> None:
        home = self.home
        uid, gid = os.getuid(), os.getgid()
        self.mkdir(home.domains / domain, 0o755)
        self.add_line(home.control / "virtualdomains", f"{domain}:{domain}",
                      lambda line: line.split(":", 1)[0].lower() == domain)
        if self.add_line(home.control / "rcpthosts", domain,
                         lambda line: line.strip().lower() == domain):
            if (home.control / "rcpthosts.cdb").exists():
                make_control_cdb(home.control, "rcpthosts")
                self.report.append(f"rebuilt {home.control / 'rcpthosts.cdb'}")
        assign = f"+{domain}-:{domain}:{uid}:{gid}:{home.domains / domain}:-::"
        self.add_line(home.users / "assign", assign,
                      lambda line: line.lower().startswith(f"+{domain}-:"), before_dot=True)

    def remove_domain(self, domain: str) -> None:
        home = self.home
        self.remove_lines(home.control / "virtualdomains",
                          lambda line: line.split(":", 1)[0].strip().lower() == domain)
        if self.remove_lines(home.control / "rcpthosts",
                             lambda line: line.strip().lower() == domain):
            if (home.control / "rcpthosts.cdb").exists():
                make_control_cdb(home.control, "rcpthosts")
                self.report.append(f"rebuilt {home.control / 'rcpthosts.cdb'}")
        self.remove_lines(home.users / "assign",
                          lambda line: line.lower().startswith(f"+{domain}-:"))

    def remove_lines(self, path: Path, present) -> bool:
        """Drop the lines of *path* satisfying *present*; True when any went."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        lines = data.decode("utf-8", "surrogateescape").splitlines()
        kept = [line for line in lines if not present(line)]
        if len(kept) == len(lines):
            return False
        write_atomic(path, "".join(line + "\n" for line in kept).encode("utf-8", "surrogateescape"),
                     path.stat().st_mode & 0o777)
        self.report.append(f"removed {len(lines) - len(kept)} line(s) from {path}")
        return True

    def add_line(self, path: Path, line: str, present, before_dot: bool = False) -> bool:
        """Add *line* to *path* unless a line satisfying *present* is there;
        with *before_dot* keep the terminating ``.`` line last."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b".\n" if before_dot else b""
        if any(present(existing) for existing in strip_lines(data)):
            return False
        text = data.decode("utf-8", "surrogateescape")
        lines = text.splitlines()
        if before_dot:
            while lines and lines[-1].strip() == "":
                lines.pop()
            if lines and lines[-1].strip() == ".":
                lines.pop()
            lines += [line, "."]
        else:
            lines.append(line)
        write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"),
                     path.stat().st_mode & 0o777 if path.exists() else 0o644)
        self.report.append(f"added {line!r} to {path}")
        return True
