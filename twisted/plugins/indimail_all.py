"""twistd dropin: ``twistd indimail`` runs every service from one home."""

from twisted.application.service import ServiceMaker

indimail = ServiceMaker(
    "IndiMail (all-in-one)",
    "indimail.tap",
    "SMTP listeners and the delivery engine of one IndiMail home in one process",
    "indimail",
)
