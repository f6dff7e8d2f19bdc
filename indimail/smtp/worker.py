"""One SMTP worker process: ``python -m indimail.smtp.worker``.

Started by :class:`~indimail.smtp.workers.WorkerPool` with inherited
listening sockets (``--listen FD:FLAVOUR:TLS:DESCRIPTION``); it accepts on
them with the same :class:`~indimail.smtp.service.SMTPService` a single
process runs, logs to stdout for the main process to relay, and ends when
the main process does (``PR_SET_PDEATHSIG``, and a parent check as a
fallback) so that no orphan keeps accepting after a crash.  With
``--limits FD --worker N`` its listeners count sessions in the shared table
(:mod:`indimail.smtp.limits`), after forgetting what an earlier worker N
left there.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import os
import signal
import sys

from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            globalLogBeginner)

from indimail.fastlog import drop_debug
from indimail.logbuffer import TurnBufferedFile
from indimail.logformat import EventText

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the main process goes (even on kill -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def parse_listen(value: str) -> tuple[int, str, bool, str]:
    fd, flavour, tls, description = value.split(":", 3)
    return int(fd), flavour, tls == "1", description


_event_text = EventText()


def _line(event) -> str:
    """An event as the line the main process relays into its log."""
    text = _event_text(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + failure.getTraceback()
    system = event.get("log_system") or event.get("log_namespace", "-")
    return f"[{system}] {text}\n"


def tls_factory(reactor, description: str, factory):
    """Wrap *factory* in the TLS of an ``ssl:`` endpoint string (SMTPS)."""
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from indimail.smtp.tls import smtps_endpoint
    endpoint = smtps_endpoint(reactor, description)
    context = endpoint._sslContextFactory   # the certificate the endpoint string names
    return TLSMemoryBIOFactory(context, False, factory)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="indimail-smtpd-worker")
    p.add_argument("--home", required=True)
    p.add_argument("--listen", action="append", default=[], type=parse_listen)
    p.add_argument("--limits", type=int, default=None,
                   help="fd of the shared MAXPERIP/MAXDAEMONS table")
    p.add_argument("--worker", type=int, default=1, help="this worker's number")
    args = p.parse_args(argv)
    early_hup: list[int] = []   # a SIGHUP before the service is up must not kill us
    signal.signal(signal.SIGHUP, lambda signum, frame: early_hup.append(signum))
    die_with_parent()
    parent = os.getppid()
    stdout = TurnBufferedFile(sys.stdout)   # one write per reactor turn once attached
    observer = FilteringLogObserver(lambda event: stdout.write(_line(event)),
                                    [LogLevelFilterPredicate(LogLevel.info)])
    drop_debug()   # the filter above would throw every debug event away
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    from indimail.leanreactor import install
    install()
    from twisted.internet import reactor, task
    stdout.attach(reactor)
    atexit.register(stdout.drain)

    from indimail.config.home import Home
    from indimail.smtp.service import SMTPService
    from indimail.smtp.sharedport import adopt_shared_port
    from indimail.smtp.workers import family_of

    svc = SMTPService(Home.from_env(args.home), reactor=reactor, env=os.environ)
    table = None
    if args.limits is not None:
        from indimail.smtp.limits import SharedTable
        table = SharedTable(args.limits)
        table.reset(args.worker)   # a killed predecessor leaks nothing
    ports = []
    for scope, (fd, flavour, tls, description) in enumerate(args.listen):
        factory = svc.factory(flavour, tls)
        if table is not None:
            factory.limits = table.view(args.worker, scope)
        if tls:
            factory = tls_factory(reactor, description, factory)
        balance = None if table is None else (lambda: table.has_less_busy_peer(args.worker))
        ports.append(adopt_shared_port(reactor, fd, family_of(fd), factory, balance))
        os.close(fd)   # the port holds its own duplicate
    if table is not None:
        table.mark_accepting(args.worker)

    def orphaned() -> None:
        if os.getppid() != parent:
            reactor.stop()
    task.LoopingCall(orphaned).start(1.0, now=False)

    def stop():
        for port in ports:
            port.stopListening()
        return svc.stopService()
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    from indimail.gcfreeze import FreezeStartupHeap
    freezer = FreezeStartupHeap(reactor)

    def start():
        svc.startService()
        freezer.startService()
        if early_hup:
            svc.reload()
    reactor.callWhenRunning(start)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
