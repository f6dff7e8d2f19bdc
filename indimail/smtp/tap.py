"""``twistd indimail-smtpd``: the SMTP, submission and SMTPS listeners.

Listeners are endpoint strings; ``none`` switches one off.  The SMTPS
default (port 2465 with ``certs/servercert.pem``) is used only when that
certificate exists; an explicit ``--smtps`` always is.
"""

from __future__ import annotations

from twisted.application import service
from twisted.python import usage

from indimail.config.home import Home
from indimail.fastlog import Logger
from indimail.listeners import (HOME_PARAMETER, LISTENER_PARAMETERS, SYNOPSIS,
                                 default_smtps, listener)

log = Logger()


class Options(usage.Options):
    synopsis = SYNOPSIS
    longdesc = ("Run IndiMail's SMTP receiver (qmail-smtpd) on endpoint strings; "
                "'none' switches a listener off.")
    optParameters = [HOME_PARAMETER, *LISTENER_PARAMETERS]


def makeService(options: Options) -> service.MultiService:
    from indimail.gcfreeze import add_process_services
    from indimail.smtp.service import make_smtp_service

    home = Home.from_env(options["home"])
    smtps = options["smtps"]
    if smtps is None:
        if (home.certs / "servercert.pem").exists():
            smtps = default_smtps(home)
        else:
            log.warn("no {cert}: SMTPS listener not started", cert=home.certs / "servercert.pem")
    top = make_smtp_service(home, smtp=listener(options["smtp"]),
                            submission=listener(options["submission"]),
                            smtps=listener(smtps))
    add_process_services(top)
    return top
