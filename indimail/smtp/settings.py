"""The knobs of one SMTP session, read from control files and the session env.

Built by the service when a connection starts (the protocol never reads a
file): ``me``, ``smtpgreeting`` (every line: upstream's multi-line
220/250/221 replies), ``timeoutsmtpd`` (default 1200 s),
``databytes`` (``DATABYTES`` wins; 0 = unlimited), ``maxhops``
(``MAXHOPS`` wins over control ``maxhops``; 0, negative or unset: 100),
``maxcmdlen`` (0 or unset: 1000 bytes, RFC 5321's text-line limit).
The session limits take the variable when set, else the control file
(upstream ``open_control_once_int``): ``MAXRECIPIENTS``/``maxrecipients``
(0 = no limit), ``TARPITCOUNT``/``tarpitcount`` and
``TARPITDELAY``/``tarpitdelay`` (default 5 s), ``GREETDELAY``/``greetdelay``
(positive: wait before the greeting; negative: wait that long for an early
talker, who is refused).  envrules may change any of them per sender: the
protocol asks for settings again with the changed environment.

Extensions: ``SMTPUTF8`` set offers SMTPUTF8 (upstream's switch), and
``ENHANCEDSTATUSCODES`` set offers that extension the same way (upstream has
none: its replies stay word for word unless the admin asks); CHUNKING
(BDAT) is offered unless ``DISABLE_CHUNKING`` is set.
``ORIGINIPFIELD`` (a number; else control ``originipfield``) non-zero adds
``X-Originating-IP:`` to relayed mail, as upstream's qmail-queue.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Mapping

from indimail.config.control import ControlFiles

DEFAULT_TIMEOUT = 1200
DEFAULT_MAXHOPS = 100
DEFAULT_MAXCMDLEN = 1000
DEFAULT_TARPITDELAY = 5


@dataclass(frozen=True)
class SessionSettings:
    me: str = "localhost"
    greeting: str = "localhost"        # the first line of smtpgreeting
    greeting_lines: tuple[str, ...] = ()   # every line, when it has more than one
    local_host: str = "localhost"      # for the Received line (TCPLOCALHOST, else me)
    databytes: int = 0
    timeout: float = DEFAULT_TIMEOUT
    maxhops: int = DEFAULT_MAXHOPS
    maxcmdlen: int = DEFAULT_MAXCMDLEN
    allow_bare_lf: bool = False
    hide_host: bool = False
    extra_greet: bool = True
    pid: int = 0
    maxrcpt: int = 0
    tarpitcount: int = 0
    tarpitdelay: float = DEFAULT_TARPITDELAY
    greetdelay: float = 0
    enhanced: bool = False         # ENHANCEDSTATUSCODES offered and used after EHLO
    chunking: bool = True          # CHUNKING (BDAT) offered
    smtputf8: bool = False         # SMTPUTF8 offered
    originipfield: bool = False    # X-Originating-IP on relayed mail


def databytes(control: ControlFiles, env: Mapping[str, str]) -> int:
    """``DATABYTES`` from the env, else control ``databytes``; never negative."""
    if "DATABYTES" in env:
        try:
            value = int(env["DATABYTES"].strip() or 0)
        except ValueError:
            value = 0
    else:
        value = control.int("databytes", 0)
    return max(0, value)


def env_or_control(control: ControlFiles, env: Mapping[str, str], variable: str,
                   name: str, default: int = 0, negative: bool = False) -> int:
    """*variable* when set (a bad number counts as *default*), else control *name*."""
    if variable in env:
        try:
            return int(env[variable].strip())
        except ValueError:
            return default
    value = control.int(name, default)
    return value if negative or value >= 0 else 0


def load_settings(control: ControlFiles, env: Mapping[str, str], *, pid: int) -> SessionSettings:
    """The settings for a session whose environment is *env*."""
    me = control.value("me") or socket.gethostname() or "localhost"
    lines = [line.strip() for line in control.lines("smtpgreeting")]
    greeting = lines[0] if lines and lines[0] else me
    timeout = control.int("timeoutsmtpd", DEFAULT_TIMEOUT)
    maxhops = env_or_control(control, env, "MAXHOPS", "maxhops", DEFAULT_MAXHOPS)
    maxcmdlen = control.int("maxcmdlen", 0)
    return SessionSettings(
        me=me,
        greeting=greeting,
        greeting_lines=tuple(lines) if len(lines) > 1 else (),
        local_host=env.get("TCPLOCALHOST") or me,
        databytes=databytes(control, env),
        timeout=timeout if timeout > 0 else 1,
        maxhops=maxhops if maxhops > 0 else DEFAULT_MAXHOPS,
        maxcmdlen=maxcmdlen if maxcmdlen > 0 else DEFAULT_MAXCMDLEN,
        allow_bare_lf="ALLOW_BARELF" in env,
        hide_host="HIDE_HOST" in env,
        extra_greet="DISABLE_EXTRA_GREET" not in env,
        pid=pid,
        maxrcpt=max(0, env_or_control(control, env, "MAXRECIPIENTS", "maxrecipients")),
        tarpitcount=max(0, env_or_control(control, env, "TARPITCOUNT", "tarpitcount")),
        tarpitdelay=max(0, env_or_control(control, env, "TARPITDELAY", "tarpitdelay",
                                          DEFAULT_TARPITDELAY)),
        greetdelay=env_or_control(control, env, "GREETDELAY", "greetdelay", negative=True),
        enhanced="ENHANCEDSTATUSCODES" in env,
        chunking="DISABLE_CHUNKING" not in env,
        smtputf8="SMTPUTF8" in env,
        originipfield=originipfield(control, env),
    )


def originipfield(control: ControlFiles, env: Mapping[str, str]) -> bool:
    """Upstream qmail-queue: ``ORIGINIPFIELD`` (scanned as a number) wins
    over control ``originipfield``; non-zero turns the header on."""
    if "ORIGINIPFIELD" in env:
        digits = ""
        for ch in env["ORIGINIPFIELD"].strip():
            if not ch.isdigit():
                break
            digits += ch
        return bool(int(digits or 0))
    return control.int("originipfield", 0) != 0
