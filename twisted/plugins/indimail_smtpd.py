"""twistd dropin: ``twistd indimail-smtpd`` runs the SMTP listeners."""

from twisted.application.service import ServiceMaker

indimail_smtpd = ServiceMaker(
    "IndiMail SMTP receiver",
    "indimail.smtp.tap",
    "ESMTP listeners (SMTP, submission, SMTPS) that stream mail into the queue",
    "indimail-smtpd",
)
