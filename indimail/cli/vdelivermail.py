"""vdelivermail as a program in a dot-qmail file: ``| vdelivermail '' <instruction>``.

qmail-local's conventions: the message on stdin; ``EXT``/``HOST`` name the user,
``SENDER``, ``RPLINE``, ``DTLINE``, ``NEWSENDER`` and ``QQEH`` come from the
environment; what it prints is the report; exit 0 delivered, 100 bounce,
111 try again later.  The delivery engine runs the same code in-process.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer, task, threads

from indimail.config.home import Home
from indimail.delivery.lines import dtline, rpline
from indimail.delivery.program import run_program
from indimail.vdomain.vdelivermail import Request, VDeliverMail, result_code

USAGE = "usage: vdelivermail '' delete|bounce-no-mailbox|Maildir|address"


class _OneMessage:
    """The queue interface RemoteDelivery reads the spooled message through."""

    def __init__(self, path: Path):
        self.path = path

    def mess(self, _msgid: int) -> Path:
        return self.path


def _spool(source) -> str:
    """Copy stdin into a private file, so it can be read more than once."""
    fd, path = tempfile.mkstemp(prefix="vdelivermail.")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out)
    return path


async def _run(reactor, instruction: str, env: dict, vfilter: bool = False) -> int:
    from indimail.queue.enqueue import Enqueuer
    from indimail.vdomain.store import open_store

    def thread(fn, *args):
        return threads.deferToThread(fn, *args)

    if "EXT" not in env:
        sys.stdout.write("No EXT environment variable\n")
        return 100
    if "SENDER" not in env:
        sys.stdout.write("vdelivermail: No SENDER environment variable\n")
        return 100
    sender = env["SENDER"]
    host = env.get("HOST", "")
    home = Home.from_env(None, env)
    message = Path(await thread(_spool, sys.stdin.buffer))
    try:
        dt = env["DTLINE"].encode("utf-8", "surrogateescape") if "DTLINE" in env else \
            dtline(env.get("LOCAL", env["EXT"]), host)
        rp = env["RPLINE"].encode("utf-8", "surrogateescape") if "RPLINE" in env else \
            rpline(sender)
        try:
            store = await open_store(home, env, reactor=reactor)
        except Exception as exc:
            sys.stdout.write(f"vdelivermail: temporary authentication error: {exc}\n")
            return 111
        enqueuer = Enqueuer(home, env, reactor=reactor)

        async def forward(recipients):
            incoming = enqueuer.begin(invoked="alias")
            incoming.write(dt + await thread(message.read_bytes))
            return await incoming.finish(env.get("NEWSENDER", sender), recipients,
                                         env.get("QQEH") or None)

        async def program(command):
            fd = os.open(message, os.O_RDONLY)
            try:
                return await run_program(reactor, command, env, env.get("HOME", "/"), fd)
            finally:
                os.close(fd)

        def relay(route, recipient):
            from indimail.config.control import ControlFiles
            from indimail.delivery.remote import RemoteDelivery
            remote = RemoteDelivery(home, ControlFiles(home.control), reactor=reactor,
                                    env={**env, "SMTPROUTE": route})
            return remote.deliver(_OneMessage(message), 0, sender, recipient,
                                  env.get("QQEH", ""))

        try:
            engine = VDeliverMail(store, thread=thread, forward=forward, program=program,
                                  relay=relay)
            result = await engine.deliver(Request(message, sender, env["EXT"], host,
                                                  instruction, rp + dt, env=env,
                                                  vfilter=vfilter))
        finally:
            store.close()
            enqueuer.close()
        if result.report:
            sys.stdout.write(result.report + "\n")
        return result_code(result)
    finally:
        os.unlink(message)


def main(argv=None, prog: str = "vdelivermail") -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 2:
        sys.stderr.write(f"{prog}: invalid number of arguments\n" + USAGE + "\n")
        sys.exit(111)
    env = dict(os.environ)
    env.pop("SPAMFILTER", None)

    def run(reactor):
        d = defer.Deferred.fromCoroutine(_run(reactor, argv[1], env, prog == "vfilter"))

        def done(code):
            sys.stdout.flush()
            if code:
                raise SystemExit(code)
        return d.addCallback(done)

    task.react(run)


if __name__ == "__main__":
    main()
