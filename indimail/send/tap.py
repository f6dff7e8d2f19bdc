"""``twistd indimail-send``: the delivery engine of one home."""

from __future__ import annotations

from twisted.python import usage

from indimail.config.home import Home


class Options(usage.Options):
    synopsis = "[--home DIR]"
    longdesc = ("Process the queue(s) of an IndiMail home: todo processing, local "
                "and remote deliveries, retries and bounces (qmail-send).")
    optParameters = [
        ["home", None, None, "home directory (default $INDIMAIL_HOME, else ~/.indimail)"],
    ]


def makeService(options: Options):
    from indimail.gcfreeze import add_process_services
    from indimail.send.service import make_send_service

    top = make_send_service(Home.from_env(options["home"]))
    add_process_services(top)
    return top
