"""``indimail showctl``: what the control files say, qmail-showctl style.

Each control file that exists is shown with its value(s); the main ones
that are absent are shown with the default the services use.  Then the
service's environment (process environment + ``variables/<service>/``),
one ``VAR=value`` per line, sorted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import cdblib

from .control import ControlFiles, strip_lines
from .envdir import read_envdir, service_environment
from .home import Home

# name -> default; "$me" stands for control/me.  qmail-showctl's main files.
DEFAULTS: dict[str, str | None] = {
    "me": None,
    "defaultdomain": "$me",
    "defaulthost": "$me",
    "plusdomain": "$me",
    "envnoathost": "$me",
    "helohost": "$me",
    "idhost": "$me",
    "localiphost": "$me",
    "smtpgreeting": "$me",
    "bouncefrom": "MAILER-DAEMON",
    "bouncehost": "$me",
    "doublebouncehost": "$me",
    "doublebounceto": "postmaster",
    "locals": "$me",
    "rcpthosts": None,
    "virtualdomains": None,
    "concurrencylocal": "10",
    "concurrencyremote": "20",
    "databytes": "0",
    "queuelifetime": "604800",
    "timeoutconnect": "60",
    "timeoutremote": "1200",
    "timeoutsmtpd": "1200",
}

_NONE_TEXT = {
    "me": "(none: run indimail init)",
    "rcpthosts": "(none: SMTP accepts mail for any domain)",
    "virtualdomains": "(none)",
}


def _file_lines(path: Path) -> list[str]:
    name = path.name
    if name.endswith(".cdb"):
        try:
            count = len(list(cdblib.Reader(path.read_bytes()).keys()))
        except Exception as exc:
            return [f"{name}: unreadable cdb ({exc})"]
        return [f"{name}: cdb, {count} key{'s' if count != 1 else ''}"]
    try:
        values = strip_lines(path.read_bytes())
    except OSError as exc:
        return [f"{name}: unreadable ({exc.strerror})"]
    if len(values) == 1:
        return [f"{name}: {values[0]}"]
    if not values:
        return [f"{name}: (empty)"]
    return [f"{name}:"] + [f"  {value}" for value in values]


def showctl_lines(home: Home, service: str | None = "smtpd",
                  env: Mapping[str, str] | None = None) -> list[str]:
    """The report, as lines."""
    control = ControlFiles(home.control)
    me = control.value("me")
    out = [f"home: {home.path}", f"control directory: {home.control}"]
    present = sorted(os.listdir(home.control)) if home.control.is_dir() else []
    shown = set()
    for name in DEFAULTS:
        if name in present:
            out += _file_lines(home.control / name)
            shown.add(name)
        else:
            default = DEFAULTS[name]
            if default == "$me":
                default = me
            out.append(f"{name}: {default} (default)" if default is not None
                       else f"{name}: {_NONE_TEXT.get(name, '(none)')}")
    for name in present:
        if name in shown or name.startswith("."):
            continue
        path = home.control / name
        if path.is_dir():
            values = read_envdir(path, {})
            out.append(f"{name}/:")
            out += [f"  {key}={values[key]}" for key in sorted(values)]
        else:
            out += _file_lines(path)
    if service:
        environment = service_environment(home, service, env)
        out.append(f"environment ({service}):")
        out += [f"{key}={_one_line(environment[key])}" for key in sorted(environment)]
    return out


def _one_line(value: str) -> str:
    """envdir turns NULs into newlines; keep one variable per output line."""
    return value.replace("\n", "\\n")
