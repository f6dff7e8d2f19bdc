"""vchkpass: a checkpassword program over the virtual-domain store.

Reads ``login\\0password\\0`` (then a timestamp, or qmail-smtpd's
``response\\0`` and one method byte) from descriptor 3, as djb's
checkpassword interface and indimail-mta's extension of it define.  Two
ways to run, as upstream's vchkpass:

* under qmail-smtpd (``vchkpass subprogram …``, usually ``/bin/false``
  last): a good login exits 0, or 3 when the user has NO_RELAY; a wrong
  password or an unknown user runs the next *subprogram* with the same
  data on descriptor 3, so checkers chain;
* as a native checkpassword (``NATIVE_CHECKPASSWORD`` or ``NATIVE_PASSWORD``
  set, or ``DOVECOT_VERSION`` as Dovecot sets it): a good login sets
  ``HOME``, ``userdb_uid``/``userdb_gid`` and ``EXTRA`` and executes
  ``argv[1:]`` (Dovecot's checkpassword-reply); a wrong password or an
  unknown user exits 1.  A POP3/IMAP login (``SERVICE``) from
  ``TCPREMOTEIP`` also opens POP-before-SMTP relaying (the relay table)
  and updates lastauth.

A refused account prints ``553-… (#5.7.1)`` and exits 1; a database
problem prints ``454-… (#4.3.0)`` and exits 111.  ``POSTAUTH`` names a
program run with the login after success (its status is the exit status
under qmail-smtpd).  The store is the home's (``INDIMAIL_HOME``, or
``--home DIR`` before the subprogram).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from twisted.cred import error as cred_error
from twisted.internet import defer, task

from indimail.auth.credentials import (AUTH_METHOD_NUMBERS, CramCredentials,
                                       DigestMD5Credentials, UsernamePassword)
from indimail.auth.mechanisms import CRAM_HASHES
from indimail.config.home import Home
from indimail.vdomain import flags
from indimail.vdomain.credchecker import AccountRefused, StoreChecker, StoreUnavailable
from indimail.vdomain.relaytable import open_relay
from indimail.vdomain.store import open_store

AUTHLEN = 512
_METHODS = {number: name for name, number in AUTH_METHOD_NUMBERS.items()}


class BadInput(Exception):
    """Descriptor 3 did not hold what the protocol says (exit 2)."""


def read_fd3(fd: int = 3) -> bytes:
    """Everything on descriptor 3 (at most 512 bytes, as upstream)."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, AUTHLEN + 1 - len(data))
        except InterruptedError:
            continue
        if not chunk:
            return data
        data += chunk
        if len(data) >= AUTHLEN + 1:
            raise BadInput("too much data on descriptor 3")


def parse_fd3(data: bytes):
    """(login, second, third, method number) from the descriptor-3 bytes."""
    fields = data.split(b"\0")
    if len(fields) < 3 or not fields[0]:
        raise BadInput("need login\\0password\\0")
    login, second = fields[0], fields[1]
    third = fields[2] if len(fields) > 3 else b""
    method = fields[3][0] if len(fields) > 4 and fields[3] else 0
    return login, second, third, method


def credentials_for(login: bytes, second: bytes, third: bytes, method: int):
    """The twisted.cred credentials the fields stand for."""
    name = _METHODS.get(method)
    if name in CRAM_HASHES:
        return CramCredentials(login, second, third, name, CRAM_HASHES[name])
    if name == "DIGEST-MD5":
        fields = {}
        for line in third.split(b"\n"):
            key, sep, value = line.partition(b"=")
            if sep:
                fields[key.decode("ascii", "replace")] = value
        if not all(k in fields for k in ("nonce", "cnonce", "nc", "digest-uri")):
            raise BadInput("incomplete DIGEST-MD5 directives")
        fields.setdefault("qop", b"auth")
        return DigestMD5Credentials(login, second, fields)
    return UsernamePassword(login, second)   # 0 (plain checkpassword), LOGIN, PLAIN


def is_native(env) -> bool:
    return any(name in env for name in ("NATIVE_CHECKPASSWORD", "NATIVE_PASSWORD",
                                        "DOVECOT_VERSION"))


def split_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """(home, subprogram argv) from vchkpass's arguments."""
    home = None
    if argv and argv[0].startswith("--home="):
        home, argv = argv[0][len("--home="):], argv[1:]
    elif len(argv) >= 2 and argv[0] == "--home":
        home, argv = argv[1], argv[2:]
    return home, argv


def userdb_ids(directory: str) -> tuple[int, int]:
    """The owner of the user's directory: what Dovecot should run as for them."""
    try:
        st = os.stat(directory)
        return st.st_uid, st.st_gid
    except OSError:
        return os.getuid(), os.getgid()


class Outcome:
    """What to do once the reactor is gone: print, then exit or exec."""

    def __init__(self, status: int = 0, text: str = "", exec_argv=None, env=None,
                 fd3: bytes | None = None, fd6: bytes | None = None):
        self.status = status
        self.text = text
        self.exec_argv = exec_argv
        self.env = env
        self.fd3 = fd3
        self.fd6 = fd6


async def check(reactor, home: Home, env: dict, argv: list[str], data: bytes) -> Outcome:
    try:
        login, second, third, method = parse_fd3(data)
        creds = credentials_for(login, second, third, method)
    except BadInput as exc:
        sys.stderr.write(f"vchkpass: {exc}\n")
        return Outcome(2)
    native = is_native(env)
    service = (env.get("SERVICE") or "smtp") if native else "smtp"
    chain = Outcome(fd3=data, exec_argv=argv, env=env)
    try:
        store = await open_store(home, env, reactor=reactor)
    except Exception as exc:
        return Outcome(111, f"454-failed to connect to database ({exc}) (#4.3.0)\r\n")
    try:
        checker = StoreChecker(store, reactor, env, service=service)
        try:
            address, user = await checker.authenticate(creds)
        except AccountRefused as exc:
            return Outcome(1, f"553-{exc.smtp_reply[2]} (#5.7.1)\r\n")
        except StoreUnavailable as exc:
            return Outcome(111, f"454-{exc} (#4.3.0)\r\n")
        except cred_error.UnauthorizedLogin:
            return Outcome(1) if native else chain
        env = dict(env, HOME=user.pw_dir)
        status = run_postauth(env, login.decode("utf-8", "replace"))
        if not native:
            fd6 = getattr(creds, "rspauth", None)
            return Outcome(3 if user.has(flags.NO_RELAY) else status, fd6=fd6)
        if service.lower().startswith(("pop", "imap")) and env.get("TCPREMOTEIP"):
            await remember_login(store, user, address, service, env["TCPREMOTEIP"])
        uid, gid = userdb_ids(user.pw_dir)
        extra = "userdb_uid userdb_gid" + (" " + env["EXTRA"] if env.get("EXTRA") else "")
        env.update(userdb_uid=str(uid), userdb_gid=str(gid), EXTRA=extra)
        return Outcome(exec_argv=argv, env=env)
    finally:
        store.close()


async def remember_login(store, user, address: str, service: str, ip: str) -> None:
    """POP-before-SMTP and lastauth; a failure here does not fail the login."""
    now = time.time()
    try:
        await open_relay(store, address, ip, now)
        await store.record_auth(user.pw_name, user.pw_domain, service.lower()[:10], ip, now,
                                gecos=user.pw_gecos)
    except Exception as exc:
        sys.stderr.write(f"vchkpass: unable to record the login of {address}: {exc}\n")


def run_postauth(env: dict, login: str) -> int:
    """``POSTAUTH login`` when POSTAUTH names an executable; its exit status."""
    program = env.get("POSTAUTH")
    if not program or not os.access(program, os.X_OK):
        return 0
    return subprocess.run([program, login], env=env).returncode


def finish(outcome: Outcome) -> None:
    """Print, hand over to the next program, or exit."""
    if outcome.text:
        sys.stdout.write(outcome.text)
        sys.stdout.flush()
    if outcome.fd6 is not None:
        try:
            os.write(6, outcome.fd6)
        except OSError:
            pass
    if outcome.exec_argv is None:
        sys.exit(outcome.status)
    if not outcome.exec_argv:
        sys.exit(1 if outcome.fd3 is not None else 0)
    if outcome.fd3 is not None:   # the next checker reads the same bytes on fd 3
        read_end, write_end = os.pipe()
        os.write(write_end, outcome.fd3)
        os.close(write_end)
        if read_end != 3:
            os.dup2(read_end, 3)
            os.close(read_end)
        os.set_inheritable(3, True)
    try:
        os.execve(outcome.exec_argv[0], outcome.exec_argv, outcome.env)
    except OSError as exc:
        sys.stdout.write(f"454-exec {outcome.exec_argv[0]}: {exc.strerror} (#4.3.0)\r\n")
        sys.stdout.flush()
        sys.exit(111)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    home_path, argv = split_args(argv)
    if not argv:
        sys.exit(2)
    try:
        data = read_fd3()
        parse_fd3(data)
    except (BadInput, OSError) as exc:
        sys.stderr.write(f"vchkpass: {exc}\n")
        sys.exit(2)
    env = dict(os.environ)
    env.pop("HOME", None)
    if is_native(env):
        for name in ("userdb_uid", "userdb_gid", "EXTRA"):
            env.pop(name, None)
    home = Home.from_env(home_path, os.environ)
    outcome: list[Outcome] = []

    def run(reactor):
        d = defer.Deferred.fromCoroutine(check(reactor, home, env, argv, data))
        d.addCallback(outcome.append)
        return d

    try:
        task.react(run)
    except SystemExit as exc:
        if exc.code not in (0, None) or not outcome:
            sys.stdout.write("454-temporary failure (#4.3.0)\r\n")
            sys.exit(111)
    finish(outcome[0])


if __name__ == "__main__":
    main()
