"""Program deliveries (``|command`` lines): ``/bin/sh -c command`` with the
message on stdin, run with ``reactor.spawnProcess``.

Exit codes (reference §7): 0 success, 99 success and skip the rest of the
dot-qmail file, 100/64/65/70/76/77/78/112 permanent, anything else
temporary; a crash is temporary.  What the program prints is the report.

:func:`run_qmail_local` runs a program in qmail-local's place
(``QMAILLOCAL``, or the privileged file-delivery child) and reads its exit
code as qmail-lspawn does.  Either runs as another uid/gid when asked
(:mod:`.privileges`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from twisted.internet import defer, error, protocol

from indimail.delivery import privileges
from indimail.delivery.result import DEFERRAL, FAILURE, SUCCESS

PERMANENT_CODES = frozenset({100, 64, 65, 70, 76, 77, 78, 112})
# qmail-lspawn's reading of qmail-local's exit code (QMAILLOCAL programs too)
LOCAL_TEMPORARY = frozenset({111, 71, 74, 75})
TRUNCREPORT = 3000
STOP = 99
SHELL = "/bin/sh"


@dataclass(frozen=True)
class ProgramOutcome:
    """How a program ended: *status*, whether to stop (exit 99), its output."""

    status: str
    stop: bool
    output: str
    exit_code: int | None


def classify(exit_code: int | None) -> tuple[str, bool]:
    """(status, stop) for an exit code; None means the child was killed."""
    if exit_code is None:
        return DEFERRAL, False
    if exit_code == 0:
        return SUCCESS, False
    if exit_code == STOP:
        return SUCCESS, True
    if exit_code in PERMANENT_CODES:
        return FAILURE, False
    return DEFERRAL, False


class CollectOutput(protocol.ProcessProtocol):
    """A child's output on every fd it writes; ``done`` fires with its exit
    code (None when a signal killed it)."""

    def __init__(self):
        self.output = bytearray()
        self.done: defer.Deferred = defer.Deferred()

    def childDataReceived(self, fd: int, data: bytes):
        self.output += data

    def processEnded(self, reason):
        value = reason.value
        code: int | None
        if isinstance(value, error.ProcessDone):
            code = 0
        elif isinstance(value, error.ProcessTerminated) and value.exitCode is not None:
            code = value.exitCode
        else:
            code = None
        self.done.callback(code)


def run_program(reactor, command: str, env: Mapping[str, str], cwd: str,
                stdin_fd: int, uid: int | None = None,
                gid: int | None = None) -> defer.Deferred:
    """Run *command* (as *uid*/*gid* when given); fires with a
    :class:`ProgramOutcome`.

    *stdin_fd* (the message, positioned at its start) becomes the child's
    fd 0; the caller closes it once this returns."""
    proto = CollectOutput()
    environ = {k: v for k, v in env.items()}
    privileges.spawn(reactor, proto, SHELL, [SHELL, "-c", command], env=environ,
                     path=cwd, childFDs={0: stdin_fd, 1: "r", 2: "r"}, uid=uid, gid=gid)

    def finished(code):
        status, stop = classify(code)
        output = bytes(proto.output).decode("utf-8", "replace").rstrip("\n")
        if code is None and not output:
            output = "Aack, child crashed. (#4.3.0)"
        return ProgramOutcome(status, stop, output, code)

    return proto.done.addCallback(finished)


def open_message(path: os.PathLike | str) -> int:
    """A read-only descriptor of the message file (blocking: use a thread)."""
    return os.open(path, os.O_RDONLY)


def classify_qmail_local(exit_code: int | None) -> str:
    """qmail-lspawn's ``report``: 0 success; 111, 71, 74, 75 deferral; any
    other code failure; a crash (None) deferral."""
    if exit_code is None or exit_code in LOCAL_TEMPORARY:
        return DEFERRAL
    return SUCCESS if exit_code == 0 else FAILURE


def run_qmail_local(reactor, executable: str, args: list[str], env: Mapping[str, str],
                    cwd: str, stdin_fd: int, uid: int | None = None,
                    gid: int | None = None) -> defer.Deferred:
    """Run a program in qmail-local's place (``QMAILLOCAL``) with *args*
    (``args[0]`` is ``qmail-local``); stdout and stderr are its report, cut
    at 3000 characters like qmail-lspawn's.  Fires with a ProgramOutcome."""
    proto = CollectOutput()
    privileges.spawn(reactor, proto, executable, args, env=dict(env), path=cwd,
                     childFDs={0: stdin_fd, 1: "r", 2: "r"}, uid=uid, gid=gid)

    def finished(code):
        output = bytes(proto.output[:TRUNCREPORT]).decode("utf-8", "replace").rstrip("\n")
        if code is None:
            output = "qmail-local crashed."
        return ProgramOutcome(classify_qmail_local(code), False, output, code)

    return proto.done.addCallback(finished)
