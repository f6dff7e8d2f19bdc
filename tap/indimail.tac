# twistd -ny tap/indimail.tac
#
# The all-in-one deployment: SMTP listeners and the delivery engine of one
# home in one process.  Settings come from the environment so the same file
# serves every machine: INDIMAIL_HOME (default ~/.indimail), and the
# listener endpoints INDIMAIL_SMTP, INDIMAIL_SUBMISSION, INDIMAIL_SMTPS
# ("none" switches one off).
import os

from twisted.application import service

from indimail.config.home import Home
from indimail.listeners import (DEFAULT_SMTP, DEFAULT_SUBMISSION, default_smtps,
                                 listener)
from indimail.tap import make_all_service

home = Home.from_env()
application = service.Application("indimail")
make_all_service(
    home,
    smtp=listener(os.environ.get("INDIMAIL_SMTP", DEFAULT_SMTP)),
    submission=listener(os.environ.get("INDIMAIL_SUBMISSION", DEFAULT_SUBMISSION)),
    smtps=listener(os.environ.get("INDIMAIL_SMTPS", default_smtps(home))),
).setServiceParent(application)
