"""test-recipients: look an address up as CHECKRECIPIENT would.

``test-recipients -s addr`` asks the virtual-domain store (upstream: MySQL
through inlookup), ``-r addr`` the ``recipients`` control file.  Messages
and exit codes are upstream's, except that ``-s`` exits 0 when the user is
found (upstream exits 1 for every ``-s`` answer).  ``-t secs`` bounds a
recipients program's run (default 60).  ``--home`` or ``INDIMAIL_HOME``
picks the home.
"""

from __future__ import annotations

import getopt
import os
import sys

from twisted.internet import defer, task

from indimail.config.control import ControlFiles
from indimail.config.home import Home
from indimail.vdomain import recipients as rcpt
from indimail.vdomain.store import open_store

USAGE = "test-recipients -r | -s addr"
FATAL = "test-recipients: fatal: "

_SQL_TEXT = {rcpt.FOUND: (0, "test-recipients: user found in MySQL"),
             rcpt.ABSENT: (1, FATAL + "user not found"),
             rcpt.INACTIVE: (1, FATAL + "user is inactive"),
             rcpt.OVERQUOTA: (1, FATAL + "user is overquota")}


def _die(code: int, text: str):
    sys.stderr.write(text + "\n")
    return code


async def _sql(reactor, home: Home, address: str) -> int:
    try:
        store = await open_store(home, os.environ, reactor=reactor)
    except Exception as exc:
        return _die(111, f"{FATAL}unable to open the database: {exc}")
    try:
        status = await rcpt.user_status(store, address)
    except Exception as exc:
        return _die(111, f"{FATAL}database error: {exc}")
    finally:
        store.close()
    return _die(*_SQL_TEXT[status])


async def _recipients(reactor, home: Home, address: str, timeout: float) -> int:
    rules = rcpt.RecipientRules(ControlFiles(home.control), home.path, reactor, timeout)
    try:
        found = await rules.lookup(address)
    except rcpt.RecipientsTempFail:
        return _die(111, "test-recipients: command configured for PAVM failed")
    except Exception:
        return _die(111, "test-recipients: error reading control/recipients")
    if found == rcpt.R_NOT_FOUND:
        return _die(1, FATAL + "user not found")
    if found == rcpt.R_NO_FILE:
        return _die(111, "test-recipients: control file missing")
    return _die(0, "test-recipients: " + rcpt.R_TEXT[found])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        opts, args = getopt.getopt(argv, "rst:", ["home="])
    except getopt.GetoptError:
        sys.exit(_die(100, USAGE))
    chosen = {k for k, _ in opts if k in ("-r", "-s")}
    if len(chosen) != 1 or len(args) != 1:
        sys.exit(_die(100, USAGE))
    timeout = rcpt.PROGRAM_TIMEOUT
    home_path = None
    for key, value in opts:
        if key == "-t":
            try:
                timeout = float(value)
            except ValueError:
                sys.exit(_die(100, USAGE))
        elif key == "--home":
            home_path = value
    home = Home.from_env(home_path, os.environ)
    address = args[0]

    def run(reactor):
        coro = (_sql(reactor, home, address) if "-s" in chosen
                else _recipients(reactor, home, address, timeout))
        d = defer.Deferred.fromCoroutine(coro)

        def done(status):
            if status:
                raise SystemExit(status)
        return d.addCallback(done)

    task.react(run)


if __name__ == "__main__":
    main()
