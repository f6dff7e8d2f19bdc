"""Programs the engine runs around a bounce: ``BOUNCEPROCESSOR`` and
``BOUNCEQUEUE``.

As indimail-mta's ``bounce_processor()``: it runs with the arguments mess
file, bounce file, bounce report, bounce sender, original recipient and
bounce recipient; exit 0 sends the bounce, exit 1 discards it, anything
else (or a crash) means "try again later".

``BOUNCEQUEUE`` names a qmail-queue program that bounces are queued with
instead of the engine's own queue writer (``qmail-nullqueue`` throws them
away): the message goes to its fd 0 and the envelope (``Fsender\0Trcpt\0\0``)
to its fd 1; exit 0 means queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from twisted.internet import defer, protocol, utils

SEND = 0
DISCARD = 1


@dataclass(frozen=True)
class BounceArgs:
    """What the bounce processor is told about one bounce."""

    mess: str
    bounce: str
    report: str
    sender: str
    original_recipient: str
    recipient: str

    def argv(self) -> list[str]:
        return [self.mess, self.bounce, self.report, self.sender,
                self.original_recipient, self.recipient]


def split_bounce_text(text: bytes) -> tuple[str, str]:
    """(original recipient, report) as upstream cuts the bounce file: the
    text before the first ``:`` and what follows it, leading blanks skipped."""
    decoded = text.decode("utf-8", "surrogateescape")
    head, sep, rest = decoded.partition(":")
    if not sep:
        return decoded, "?"
    return head, rest.lstrip()


def run_bounce_processor(program: str, args: BounceArgs, env: Mapping[str, str],
                         reactor=None):
    """Run *program*; fires with its exit code (-1 when it was killed)."""
    return utils.getProcessValue(program, args.argv(), env=dict(env), reactor=reactor)


class QueueProgramError(Exception):
    """The BOUNCEQUEUE program did not queue the bounce (exit code, or None
    when it could not run or was killed)."""

    def __init__(self, program: str, code: int | None):
        super().__init__(f"{program} exited {code}")
        self.code = code


class _QueueProtocol(protocol.ProcessProtocol):
    """Feeds message and envelope to a qmail-queue program."""

    def __init__(self, data: bytes, envelope: bytes, done: defer.Deferred):
        self.data = data
        self.envelope = envelope
        self.done = done
        self.pid: int | None = None

    def connectionMade(self):
        self.pid = self.transport.pid
        self.transport.writeToChild(0, self.data)
        self.transport.closeChildFD(0)
        self.transport.writeToChild(1, self.envelope)
        self.transport.closeChildFD(1)

    def childConnectionLost(self, fd):
        pass

    def processEnded(self, reason):
        self.done.callback((self.pid, getattr(reason.value, "exitCode", None)))


def queue_envelope(sender: str, recipients: list[str]) -> bytes:
    """qmail-queue's envelope: ``F`` sender, a ``T`` per recipient, a NUL."""
    enc = lambda a: a.encode("utf-8", "surrogateescape")  # noqa: E731
    return (b"F" + enc(sender) + b"\0" + b"".join(b"T" + enc(r) + b"\0" for r in recipients)
            + b"\0")


async def queue_with_program(program: str, data: bytes, sender: str, recipient: str,
                             env: Mapping[str, str], reactor=None) -> int:
    """Queue *data* through the qmail-queue program *program*; fires with its
    pid (the ``qp`` of the log line) or raises QueueProgramError."""
    if reactor is None:
        from twisted.internet import reactor
    done: defer.Deferred = defer.Deferred()
    proto = _QueueProtocol(data, queue_envelope(sender, [recipient]), done)
    try:
        reactor.spawnProcess(proto, program, [program], env=dict(env),
                             childFDs={0: "w", 1: "w", 2: 2})
    except OSError as exc:
        raise QueueProgramError(program, None) from exc
    pid, code = await done
    if code != 0:
        raise QueueProgramError(program, code)
    return pid or 0
