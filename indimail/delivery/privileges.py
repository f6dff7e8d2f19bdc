"""Deliveries as another user: qmail-lspawn's ``prot_gid``/``prot_uid``.

A service running as root delivers for a system user (or a ``users/assign``
entry) with that user's uid and gid, in a child process, so the kernel
checks the user's own permissions and new files belong to the user.  A
service not running as root, or delivering for its own uid, works
in-process as itself (:func:`switch_needed`).

Two kinds of child, both started with ``reactor.spawnProcess``:

* :func:`spawn` runs any program (``|command`` lines, ``QMAILLOCAL``,
  filters) through a tiny interpreter that drops privileges the way
  qmail's ``prot.c`` does (``setgroups([gid])``, ``setgid``, ``setuid``)
  and then ``execv``\\s the program;
* :func:`file_delivery_argv` is this module run with ``-m``: it writes one
  Maildir or mbox copy (message on stdin) as the user, prints qmail-local's
  text on failure and exits 0, 100 or 111.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Runs as root in the child, then becomes the user and execs the program.
# -I -S: no site, no PYTHON* variables: a small, fast, unconfigurable start.
_DROP = (
    "import os,sys\n"
    "u,g=int(sys.argv[1]),int(sys.argv[2])\n"
    "try:\n"
    " os.setgroups([g]);os.setgid(g);os.setuid(u)\n"
    "except OSError as e:\n"
    " sys.stdout.write('Unable to switch to uid %d gid %d: %s. (#4.3.0)\\n'%(u,g,e.strerror))\n"
    " sys.stdout.flush();os._exit(111)\n"
    "try:\n"
    " os.execv(sys.argv[3],sys.argv[4:])\n"
    "except OSError as e:\n"
    " sys.stdout.write('Unable to run %s: %s. (#4.3.0)\\n'%(sys.argv[3],e.strerror))\n"
    " sys.stdout.flush();os._exit(111)\n"
)


def switch_needed(uid: int, gid: int, euid: int | None = None, egid: int | None = None) -> bool:
    """Whether a delivery for *uid*/*gid* must run in a child as that user:
    only when this process is root and the target is someone else."""
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    return euid == 0 and (uid, gid) != (euid, egid)


def drop_argv(uid: int, gid: int, executable: str, args: list[str]) -> list[str]:
    """The argv that runs ``execv(executable, args)`` as *uid*/*gid*."""
    return [sys.executable, "-I", "-S", "-c", _DROP, str(uid), str(gid), executable, *args]


def spawn(reactor, proto, executable: str, args: list[str], *, env, path, childFDs,
          uid: int | None = None, gid: int | None = None):
    """``reactor.spawnProcess``, as *uid*/*gid* when given."""
    if uid is None:
        return reactor.spawnProcess(proto, executable, args, env=env, path=path,
                                    childFDs=childFDs)
    argv = drop_argv(uid, gid if gid is not None else uid, executable, args)
    return reactor.spawnProcess(proto, argv[0], argv, env=env, path=path, childFDs=childFDs)


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def file_delivery_argv(kind: str, uid: int, gid: int, target: os.PathLike | str,
                       prefix: bytes, *, hostname: str, fsync: bool,
                       ufline: bytes = b"") -> list[str]:
    """The argv of a child writing one Maildir (*kind* ``maildir``) or mbox
    (``mbox``) copy as *uid*/*gid*; the message is its stdin."""
    dec = os.fsdecode
    return [sys.executable, "-m", "indimail.delivery.privileges", kind, str(uid), str(gid),
            dec(os.fspath(target)), dec(prefix), hostname, "1" if fsync else "0",
            dec(ufline)]


def file_delivery_env() -> dict[str, str]:
    """The child's environment: it imports this very package, nothing else."""
    env = {"PYTHONPATH": _package_root(), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if "PYTHONHASHSEED" in os.environ:
        env["PYTHONHASHSEED"] = os.environ["PYTHONHASHSEED"]
    return env


# -- the child ----------------------------------------------------------------

EXIT = {"success": 0, "failure": 100, "deferral": 111}


def main(argv: list[str]) -> int:
    """``python -m indimail.delivery.privileges maildir|mbox uid gid target
    prefix hostname fsync ufline``: drop to uid/gid, deliver stdin."""
    # imported while still root: the package may not be readable by the user
    from indimail.delivery.maildir import MaildirWriter
    from indimail.delivery.mbox import deliver_mbox
    from indimail.delivery.result import DeliveryError
    try:
        kind, uid, gid, target, prefix, hostname, fsync, ufline = argv
        uid_n, gid_n = int(uid), int(gid)
    except ValueError:
        print("Internal qmail-lspawn bug.")
        return 111
    try:
        os.setgroups([gid_n])
        os.setgid(gid_n)
        os.setuid(uid_n)
    except OSError as exc:
        print(f"Unable to switch to uid {uid_n} gid {gid_n}: {exc.strerror}. (#4.3.0)")
        return 111
    enc = os.fsencode
    try:
        if kind == "maildir":
            MaildirWriter(hostname=hostname, fsync=fsync == "1").deliver(target, enc(prefix), 0)
        elif kind == "mbox":
            deliver_mbox(target, enc(ufline), enc(prefix), 0, fsync == "1")
        else:
            print("Internal qmail-lspawn bug.")
            return 111
    except DeliveryError as exc:
        print(exc.result.report)
        return EXIT[exc.result.status]
    except Exception as exc:  # noqa: BLE001 - reported like qmail-local's crash
        print(f"Temporary failure in qmail-local: {exc}. (#4.3.0)")
        return 111
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(errors="replace")
    sys.exit(main(sys.argv[1:]))
