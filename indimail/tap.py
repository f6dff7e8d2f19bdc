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


class Options(usage.Options):
    synopsis = SYNOPSIS
    longdesc = ("Run IndiMail's SMTP service and delivery engine in one process. "
                "An empty home is initialised first. Listeners are endpoint "
                "strings; 'none' switches one off.")
    optParameters = [HOME_PARAMETER, *LISTENER_PARAMETERS]


def make_all_service(home: Home, *, reactor=None, smtp: str | None = DEFAULT_SMTP,
                     submission: str | None = DEFAULT_SUBMISSION,
                     smtps: str | None = None, env=None) -> service.MultiService:
    """The SMTP service and the delivery engine under one parent service."""
    from indimail.config.init import init_home
    from indimail.send.service import make_send_service
    from indimail.smtp.service import make_smtp_service

    if not home.is_initialised():
        init_home(home.path, env=env)
    top = service.MultiService()
    top.setName("indimail")
    make_send_service(home, reactor=reactor, env=env).setServiceParent(top)
    make_smtp_service(home, reactor=reactor, smtp=smtp, submission=submission,
                      smtps=smtps, env=env).setServiceParent(top)
    return top


def makeService(options: Options) -> service.MultiService:
    home = Home.from_env(options["home"])
    smtps = options["smtps"] if options["smtps"] is not None else default_smtps(home)
    return make_all_service(home, smtp=listener(options["smtp"]),
                            submission=listener(options["submission"]),
                            smtps=listener(smtps))
