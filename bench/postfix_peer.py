"""A private, throw-away Postfix 3 instance that queues and delivers to a Maildir.

Everything lives under one temporary directory: its own ``config_directory``,
``queue_directory``, ``data_directory``, log file and virtual mailbox base, so it
never touches the system Postfix.  It listens on 127.0.0.1 on an unprivileged
port and delivers ``alice@example.com`` through the ``virtual`` agent to
``<root>/mail/alice/Maildir/``.  Postfix's defaults are kept for everything that
affects speed (fsync of queue files, in_flow_delay, concurrency limits); only
DNS, chroot and syslog are switched off so it runs in a sandbox.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from peer import ManagedPeer
from ready import wait_for_banner

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"

# master.cf: the stock Debian services minus chroot, plus smtpd on our port.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix is missing, misconfigured, or would not start or stop."""


@dataclass(frozen=True)
class PostfixLayout:
    """Where one private instance keeps its files (pure: computes paths only)."""

    root: Path
    domain: str = "example.com"
    user: str = "alice"

    @property
    def config(self) -> Path:
        return self.root / "etc"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def log(self) -> Path:
        return self.root / "maillog"

    @property
    def vmailbox(self) -> Path:
        return self.config / "vmailbox"

    @property
    def maildir_new(self) -> Path:
        return self.mail / self.user / "Maildir" / "new"

    @property
    def recipient(self) -> str:
        return f"{self.user}@{self.domain}"


def render_main_cf(layout: PostfixLayout, uid: int, gid: int,
                   relay_port: int | None = None) -> str:
    """main.cf for a loopback-only instance delivering one virtual Maildir
    (and, with *relay_port*, relaying everything else to 127.0.0.1:port)."""
    relay = f"relayhost = [127.0.0.1]:{relay_port}\n" if relay_port else ""
    return relay + f"""\
compatibility_level = 3.6
queue_directory = {layout.spool}
data_directory = {layout.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_host_lookup = native
disable_dns_lookups = yes
smtpd_peername_lookup = no
maillog_file = {layout.log}
maillog_file_prefixes = {layout.root}
virtual_mailbox_domains = {layout.domain}
virtual_mailbox_base = {layout.mail}
virtual_mailbox_maps = texthash:{layout.vmailbox}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
biff = no
"""


def render_master_cf(port: int) -> str:
    """master.cf: smtpd on 127.0.0.1:*port* (not chrooted) plus the stock services."""
    return f"127.0.0.1:{port} inet n - n - - smtpd\n" + MASTER_SERVICES


def delivery_ids() -> tuple[int, int]:
    """uid/gid the virtual agent delivers as: nobody, else Postfix's own user."""
    for name in ("nobody", "postfix"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid >= 100:
            return entry.pw_uid, entry.pw_gid
    raise PostfixError("no unprivileged user (nobody/postfix) for virtual deliveries")


def preflight() -> str:
    """Check this machine can run a private Postfix 3; return its version."""
    for tool in (POSTFIX, POSTCONF):
        if not os.access(tool, os.X_OK):
            raise PostfixError(f"{tool} not found (install the postfix package)")
    if os.geteuid() != 0:
        raise PostfixError("a private Postfix instance must be started as root")
    for lookup, name in ((pwd.getpwnam, "postfix"), (grp.getgrnam, "postdrop")):
        try:
            lookup(name)
        except KeyError:
            raise PostfixError(f"missing {name!r} account (postfix package not set up)")
    out = subprocess.run([POSTCONF, "-dh", "mail_version"], capture_output=True,
                         text=True, check=False)
    version = out.stdout.strip()
    if not version or int(version.split(".")[0]) < 3:
        raise PostfixError(f"Postfix 3 required, found {version or 'nothing'!r}")
    return version


class PostfixPeer(ManagedPeer):
    """Start/stop one private instance; a context manager that always stops it."""

    name = "postfix"

    def __init__(self, root: Path, port: int, *, domain: str = "example.com",
                 user: str = "alice", relay_port: int | None = None):
        self.layout = PostfixLayout(Path(root), domain, user)
        self.port = port
        self.relay_port = relay_port
        self._started = False

    @property
    def maildir_new(self) -> Path:
        return self.layout.maildir_new

    @property
    def recipient(self) -> str:
        if self.relay_port is not None:
            return "bob@remote.example"
        return self.layout.recipient

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.layout.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def prepare(self) -> None:
        """Write the configuration and create the directories Postfix expects."""
        lay = self.layout
        uid, gid = delivery_ids()
        postfix_uid = pwd.getpwnam("postfix").pw_uid
        lay.root.mkdir(parents=True, exist_ok=True)
        os.chmod(lay.root, 0o755)          # postfix and nobody must traverse it
        for path in (lay.config, lay.spool, lay.data, lay.mail):
            path.mkdir(exist_ok=True)
        os.chown(lay.data, postfix_uid, -1)
        os.chown(lay.mail, uid, gid)
        lay.vmailbox.write_text(f"{lay.recipient} {lay.user}/Maildir/\n")
        (lay.config / "main.cf").write_text(render_main_cf(lay, uid, gid, self.relay_port))
        (lay.config / "master.cf").write_text(render_master_cf(self.port))

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([POSTFIX, "-c", str(self.layout.config), *args],
                              capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise PostfixError(f"postfix {' '.join(args)} failed ({proc.returncode}):"
                               f"\n{proc.stderr}{proc.stdout}\n{self.log_tail()}")
        return proc

    def running(self) -> bool:
        """True while the master holds its pid lock (zombies don't count)."""
        return self._postfix("status", check=False).returncode == 0

    def start(self) -> None:
        self.prepare()
        self._started = True
        self._postfix("start")
        try:
            wait_for_banner("127.0.0.1", self.port, 30.0, alive=self.running)
        except Exception as exc:
            raise PostfixError(f"postfix smtpd did not answer: {exc}\n"
                               f"{self.log_tail()}") from exc

    def stop(self, timeout: float = 20.0) -> None:
        """``postfix stop``, wait for the master to go, ``abort``/SIGKILL if not."""
        if not self._started:
            return
        self._postfix("stop", check=False)
        if self._wait_gone(timeout):
            self._started = False
            return
        self._postfix("abort", check=False)
        if not self._wait_gone(timeout):
            self._kill_master()
        self._started = False

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return True
            time.sleep(0.2)
        return False

    def _kill_master(self) -> None:
        pidfile = self.layout.spool / "pid" / "master.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 9)
        except (OSError, ValueError, IndexError):
            pass
