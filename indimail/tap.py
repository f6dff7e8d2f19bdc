"""``twistd indimail``: every service of one home in one reactor.

This is the embedded default: on an empty home it runs ``indimail init``
first, then starts the SMTP listeners and the delivery engine side by side.
"""

from __future__ import annotations

from twisted.application import service
from twisted.python import usage

from indimail.config.home import Home
from indimail.listeners import (DEFAULT_SMTP, DEFAULT_SUBMISSION, HOME_PARAMETER,
                                 LISTENER_PARAMETERS, SYNOPSIS, default_smtps, listener)
from indimail.smtp.workers import ListenerSpec, WorkerPool, auto_workers


class Options(usage.Options):
    synopsis = SYNOPSIS + " [--smtp-workers N|auto]"
    longdesc = ("Run IndiMail's SMTP service and delivery engine together. "
                "An empty home is initialised first. Listeners are endpoint "
                "strings; 'none' switches one off. SMTP sessions run in "
                "--smtp-workers processes sharing the listening sockets "
                "(auto: one per core; 0: in this process).")
    optParameters = [HOME_PARAMETER, *LISTENER_PARAMETERS,
                     ["smtp-workers", None, "auto",
                      "SMTP worker processes (auto = one per core, 0 = none)"]]

    def postOptions(self) -> None:
        value = self["smtp-workers"]
        if value == "auto":
            self["smtp-workers"] = auto_workers()
            return
        try:
            self["smtp-workers"] = int(value)
        except ValueError:
            raise usage.UsageError("--smtp-workers takes a number or 'auto'") from None
        if self["smtp-workers"] < 0:
            raise usage.UsageError("--smtp-workers must not be negative")


def make_all_service(home: Home, *, reactor=None, smtp: str | None = DEFAULT_SMTP,
                     submission: str | None = DEFAULT_SUBMISSION,
                     smtps: str | None = None, env=None,
                     workers: int = 0) -> service.MultiService:
    """The SMTP service and the delivery engine under one parent service;
    with *workers* > 0 the SMTP sessions run in that many worker processes."""
    from indimail.config.init import init_home
    from indimail.send.service import make_send_service
    from indimail.smtp.service import SMTPService, make_smtp_service

    if not home.is_initialised():
        init_home(home.path, env=env)
    top = service.MultiService()
    top.setName("indimail")
    make_send_service(home, reactor=reactor, env=env).setServiceParent(top)
    if workers <= 0:
        make_smtp_service(home, reactor=reactor, smtp=smtp, submission=submission,
                          smtps=smtps, env=env).setServiceParent(top)
        return top
    if reactor is None:
        from twisted.internet import reactor  # noqa: F811
    # Build the service once here: a broken configuration or plugin fails the
    # start in this process instead of in a worker that would restart forever.
    SMTPService(home, reactor=reactor, env=env)
    specs = [ListenerSpec(name, desc, flavour, tls) for name, desc, flavour, tls in (
        ("smtp", smtp, "smtpd", False), ("submission", submission, "submission", False),
        ("smtps", smtps, "smtpd", True)) if desc]
    WorkerPool(str(home.path), specs, workers, reactor=reactor,
               env=env).setServiceParent(top)
    return top


def makeService(options: Options) -> service.MultiService:
    from indimail.gcfreeze import add_process_services

    home = Home.from_env(options["home"])
    smtps = options["smtps"] if options["smtps"] is not None else default_smtps(home)
    top = make_all_service(home, smtp=listener(options["smtp"]),
                           submission=listener(options["submission"]),
                           smtps=listener(smtps), workers=options["smtp-workers"])
    add_process_services(top)
    return top
