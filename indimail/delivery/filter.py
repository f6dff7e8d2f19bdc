"""Delivery-time filters: ``FILTERARGS`` and control ``filterargs``, the
work indimail's ``spawn-filter`` does before qmail-local or qmail-remote.

Which filter: ``FILTERARGS`` when set (for every delivery), else the first
line of ``filterargs`` whose domain matches the recipient's domain
(``getDomainToken``): ``domain:args`` for both channels,
``domain:local:args`` or ``domain:remote:args`` for one; the domain is
compared as a string, then as a wildmat (a case-insensitive regex when
``QREGEX`` is set).

How it runs: ``/bin/sh -c args`` with the message on stdin and ``DOMAIN``,
``_EXT``, ``_QQEH``, ``_SENDER``, ``_RECIPIENT`` set (``FILTERARGS`` and
``SPAMFILTER`` unset, so a filter that injects mail does not loop); its
stdout becomes the message that is delivered.  Exit 0 delivers the output,
2 discards the message (a success: "blackholed"), 100 bounces it ("Mail
Rejected"), anything else defers with the filter's stderr.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Mapping

from twisted.internet import defer, error, protocol

from indimail.config.wildmat import wildmat
from indimail.delivery import privileges
from indimail.delivery.result import DEFERRAL, FAILURE, SUCCESS

LOCAL = "local"
REMOTE = "remote"
SHELL = "/bin/sh"
BLACKHOLE = 2
REJECT = 100
REJECTED = "Mail Rejected (#5.7.1)"
ERRLEN = 1023   # spawn-filter keeps this much of the filter's stderr


def domain_token(lines: list[str], domain: str, channel: str, regex: bool = False) -> str | None:
    """spawn-filter's ``getDomainToken``: the value of the first line of
    *lines* for *domain* on *channel* (``local``/``remote``), None if none."""
    for line in lines:
        pattern, sep, rest = line.partition(":")
        if not sep or not _domain_matches(pattern, domain, regex):
            continue
        if rest.startswith("local:"):
            if channel == LOCAL:
                return rest[6:]
            continue
        if rest.startswith("remote:"):
            if channel == REMOTE:
                return rest[7:]
            continue
        return rest
    return None


def _domain_matches(pattern: str, domain: str, regex: bool) -> bool:
    if pattern == domain:
        return True
    if regex:
        try:
            return re.search(pattern, domain, re.IGNORECASE) is not None
        except re.error:
            return False
    return wildmat(pattern, domain)


def filter_command(env: Mapping[str, str], control, domain: str, channel: str) -> str | None:
    """The filter for a delivery to *domain*, or None.  Blocking (reads
    control ``filterargs``): call it from a worker thread.

    ``FILTERARGS`` set but empty means no filter (upstream would run an
    empty command and deliver an empty message; see docs/decisions.md)."""
    value = env.get("FILTERARGS")
    if value is not None:
        return value.strip() or None
    token = domain_token(control.lines("filterargs"), domain, channel, "QREGEX" in env)
    return token.strip() if token and token.strip() else None


def filter_environment(env: Mapping[str, str], domain: str, ext: str, qqeh: str,
                       sender: str, recipient: str) -> dict[str, str]:
    """spawn-filter's ``set_environ`` plus the loop guard."""
    out = {k: v for k, v in env.items() if k not in ("FILTERARGS", "SPAMFILTER")}
    out.update({"DOMAIN": domain, "_EXT": ext, "_QQEH": qqeh, "_SENDER": sender,
                "_RECIPIENT": recipient})
    return out


def make_output(env: Mapping[str, str]) -> tuple[int, str]:
    """An empty file in ``TMPDIR`` (else the system's) for the filter's
    output; blocking."""
    tmpdir = env.get("TMPDIR") or None
    fd, path = tempfile.mkstemp(prefix="qmailFilter", dir=tmpdir)
    return fd, path


@dataclass(frozen=True)
class FilterOutcome:
    """What the filter decided: *status* ``None`` means deliver the output
    (the file *path*); otherwise the delivery ends with *status*/*report*."""

    status: str | None
    report: str
    path: str | None = None


class _Filter(protocol.ProcessProtocol):
    def __init__(self):
        self.errors = bytearray()
        self.done: defer.Deferred = defer.Deferred()

    def childDataReceived(self, fd: int, data: bytes):
        if len(self.errors) < ERRLEN:
            self.errors += data[:ERRLEN - len(self.errors)]

    def processEnded(self, reason):
        value = reason.value
        if isinstance(value, error.ProcessDone):
            self.done.callback(0)
        elif isinstance(value, error.ProcessTerminated) and value.exitCode is not None:
            self.done.callback(value.exitCode)
        else:
            self.done.callback(None)


async def run_filter(reactor, command: str, message_fd: int, output_fd: int, output_path: str,
                     env: Mapping[str, str], cwd: str, *, uid: int | None = None,
                     gid: int | None = None) -> FilterOutcome:
    """Run *command* on the message (*message_fd*, at its start) with its
    stdout into *output_fd*; the caller closes both descriptors and removes
    *output_path* once the delivery is over."""
    proto = _Filter()
    privileges.spawn(reactor, proto, SHELL, ["sh", "-c", command], env=dict(env), path=cwd,
                     childFDs={0: message_fd, 1: output_fd, 2: "r"}, uid=uid, gid=gid)
    code = await proto.done
    return outcome(command, code, bytes(proto.errors), output_path)


def outcome(command: str, code: int | None, stderr: bytes, path: str) -> FilterOutcome:
    """spawn-filter's verdict on the filter's exit code (None: killed)."""
    if code is None:
        return FilterOutcome(DEFERRAL, "spawn: filter crashed. (#4.3.0)")
    if code == 0:
        return FilterOutcome(None, "", path)
    if code == BLACKHOLE:
        return FilterOutcome(SUCCESS, f"blackholed {command}")
    if code == REJECT:
        return FilterOutcome(FAILURE, REJECTED)
    text = stderr.decode("utf-8", "replace").rstrip("\n")
    said = f": {text}" if text else ""
    return FilterOutcome(DEFERRAL, f"{command}: (spawn-filter) exit code: {code}{said}. (#4.3.0)")


def remove(path: str | None) -> None:
    """Remove a filter's output file (blocking; already gone is fine)."""
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
