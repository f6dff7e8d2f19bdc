"""twistd dropin: ``twistd indimail-send`` runs the delivery engine."""

from twisted.application.service import ServiceMaker

indimail_send = ServiceMaker(
    "IndiMail delivery engine",
    "indimail.send.tap",
    "Todo processing, local and remote delivery, retries and bounces (qmail-send)",
    "indimail-send",
)
