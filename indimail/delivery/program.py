"""Program deliveries (``|command`` lines): ``/bin/sh -c command`` with the
message on stdin, run with ``reactor.spawnProcess``.

Exit codes (reference §7): 0 success, 99 success and skip the rest of the
dot-qmail file, 100/64/65/70/76/77/78/112 permanent, anything else
temporary; a crash is temporary.  What the program prints is the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from twisted.internet import defer, error, protocol

from indimail.delivery.result import DEFERRAL, FAILURE, SUCCESS

PERMANENT_CODES = frozenset({100, 64, 65, 70, 76, 77, 78, 112})
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


class _Collect(protocol.ProcessProtocol):
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
                stdin_fd: int) -> defer.Deferred:
    """Run *command*; fires with a :class:`ProgramOutcome`.

    *stdin_fd* (the message, positioned at its start) becomes the child's
    fd 0; the caller closes it once this returns."""
    proto = _Collect()
    environ = {k: v for k, v in env.items()}
    reactor.spawnProcess(proto, SHELL, [SHELL, "-c", command], env=environ,
                         path=cwd, childFDs={0: stdin_fd, 1: "r", 2: "r"})

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
