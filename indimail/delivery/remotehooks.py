"""Programs around remote delivery, as qmail-rspawn/qmail-remote run them.

``QMAILREMOTE``: a program run *instead of* the built-in remote delivery,
with qmail-remote's arguments ``host sender qqeh size recipient`` and the
message on stdin; it answers in qmail-remote's report format (reports
ended by NUL bytes: ``r``/``h``/``s`` per recipient, then ``K``/``Z``/``D``
for the message), which :func:`parse_report` reads the way qmail-rspawn's
``report_SPAWN`` does.  Its exit code 0 means "read my report", 111
"Unable to run qmail-remote." (deferral), anything else the same
permanently.

``ONSUCCESS_REMOTE``, ``ONFAILURE_REMOTE``, ``ONTEMPORARY_REMOTE``: a
program run after a delivery with that outcome, with the same arguments
and ``SMTPSTATUS`` (K, D or Z), ``SMTPCODE``, ``SMTPTEXT`` and ``SMTPHOST``
(``QMTPTEXT``/``QMTPCODE`` for QMTP) in its environment; as upstream
documents, its exit code becomes qmail-remote's, so a non-zero exit turns
the result into "Unable to run qmail-remote.".
"""

from __future__ import annotations

import os
from typing import Mapping

from twisted.internet import defer

from indimail.delivery.program import CollectOutput
from indimail.delivery.result import DEFERRAL, FAILURE, SUCCESS, DeliveryResult
from indimail.fastlog import Logger

log = Logger()
ARGV0 = "qmail-remote"
SCRIPTS = {SUCCESS: "ONSUCCESS_REMOTE", FAILURE: "ONFAILURE_REMOTE",
           DEFERRAL: "ONTEMPORARY_REMOTE"}


def remote_argv(host: str, sender: str, qqeh: str, size: int, recipient: str) -> list[str]:
    return [ARGV0, host, sender, qqeh, str(size), recipient]


def _text(record: bytes) -> str:
    return record.decode("utf-8", "replace")


def parse_report(output: bytes, exit_code: int | None) -> DeliveryResult:
    """qmail-rspawn's ``report_SPAWN`` for one recipient: the first
    recipient report decides (``r`` → the message report's verdict, ``h``
    permanent, ``s`` temporary); its text is followed by the message
    report's text when that is no better than the verdict."""
    if exit_code is None:
        return DeliveryResult(DEFERRAL, "qmail-remote crashed.")
    if exit_code == 111:
        return DeliveryResult(DEFERRAL, "Unable to run qmail-remote.")
    if exit_code != 0:
        return DeliveryResult(FAILURE, "Unable to run qmail-remote.")
    if not output:
        return DeliveryResult(DEFERRAL, "qmail-remote produced no output.")
    records = output.split(b"\0")
    if output.endswith(b"\0"):
        records.pop()
    result = -1
    for record in records:
        letter = record[:1]
        if letter == b"K":
            result = 1
            break
        if letter == b"Z":
            result = 0
            break
        if letter == b"D":
            break
    first = records[0]
    verdict = {b"s": 0, b"h": -1}.get(first[:1], result)
    text = _text(first[1:])
    if result <= verdict and len(records) > 1 and records[1][:1] in (b"K", b"Z", b"D"):
        text += _text(records[1][1:])
    status = {1: SUCCESS, 0: DEFERRAL, -1: FAILURE}[verdict]
    return DeliveryResult(status, text.rstrip("\n"))


def spawn(reactor, program: str, argv: list[str], env: Mapping[str, str], cwd: str,
          stdin_fd: int | None) -> defer.Deferred:
    """Run *program* with *argv*; fires with (exit code or None, output).
    stdout and stderr both go to the output, as qmail-rspawn's fd 2 = fd 1."""
    proto = CollectOutput()
    fds: dict[int, object] = {1: "r", 2: "r"}
    if stdin_fd is not None:
        fds[0] = stdin_fd
    reactor.spawnProcess(proto, program, argv, env=dict(env), path=cwd, childFDs=fds)
    return proto.done.addCallback(lambda code: (code, bytes(proto.output)))


async def run_qmailremote(reactor, program: str, argv: list[str], env: Mapping[str, str],
                          cwd: str, mess_fd: int) -> DeliveryResult:
    """The ``QMAILREMOTE`` program's result for one recipient."""
    environ = {k: v for k, v in env.items() if k != "QMAILLOCAL"}
    try:
        code, output = await spawn(reactor, program, argv, environ, cwd, mess_fd)
    except OSError as exc:
        log.error("QMAILREMOTE {program}: {error}", program=program, error=str(exc))
        return DeliveryResult(DEFERRAL, "Unable to run qmail-remote.")
    return parse_report(output, code)


def script_for(env: Mapping[str, str], result: DeliveryResult) -> str | None:
    return env.get(SCRIPTS[result.status]) or None


async def run_result_script(reactor, env: Mapping[str, str], argv: list[str], cwd: str,
                            result: DeliveryResult, code: int | None, text: str | None,
                            host: str | None, qmtp: bool = False) -> DeliveryResult:
    """Run the ON*_REMOTE program for *result* (when set) and apply its
    exit code; *code* and *text* are the remote's last reply (None when no
    conversation took place: SMTPCODE is then 0 and SMTPTEXT the report)."""
    program = script_for(env, result)
    if program is None:
        return result
    environ = {k: v for k, v in env.items() if k not in SCRIPTS.values() or k == SCRIPTS[
        result.status]}
    environ["SMTPSTATUS"] = result.letter
    prefix = "QMTP" if qmtp else "SMTP"
    environ[f"{prefix}TEXT"] = (text if text is not None else result.report).rstrip("\n")
    environ[f"{prefix}CODE"] = str(code if code is not None else 0)
    if host:
        environ["SMTPHOST"] = host
    try:
        exit_code, output = await spawn(reactor, program, argv, environ, cwd, None)
    except OSError as exc:
        log.error("{var} {program}: {error}", var=SCRIPTS[result.status], program=program,
                  error=str(exc))
        exit_code, output = 1, b""
    if output:
        log.info("{var}: {output}", var=SCRIPTS[result.status],
                 output=output.decode("utf-8", "replace").rstrip("\n"))
    if exit_code == 0:
        return result
    if exit_code == 111:
        return DeliveryResult(DEFERRAL, "Unable to run qmail-remote.")
    return DeliveryResult(FAILURE, "Unable to run qmail-remote.")


def open_message(path) -> int:
    """The message file as an fd for a child's stdin (call in a thread)."""
    return os.open(path, os.O_RDONLY)
