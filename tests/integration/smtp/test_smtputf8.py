"""SMTPUTF8 with Python's smtplib against a real service and queue."""

from __future__ import annotations

import smtplib

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.integration.smtp.test_bdat import Server

SENDER = "jörg@absender.example"
RCPT = "andré@mx.example.com"


class SMTPUTF8Test(Server, TestCase):

    ENV = {"SMTPUTF8": ""}

    def send(self, options):
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                client.ehlo()
                offered = client.has_extn("smtputf8")
                client.sendmail(SENDER, [RCPT], "Subject: grüße\r\n\r\nhallo\r\n".encode(),
                                mail_options=options)
                return offered
        return threads.deferToThread(run)

    async def test_utf8_message_queued(self):
        """smtplib sees SMTPUTF8 and sends MAIL ... SMTPUTF8: the UTF-8 envelope
        is queued as UTF-8 and smtpd's Received line says UTF8ESMTP (upstream's mark)."""
        offered = await self.send(["SMTPUTF8"])
        self.assertTrue(offered)
        [(envelope, mess, _)] = self.queued()
        self.assertEqual((envelope.sender, envelope.recipients), (SENDER, [RCPT]))
        self.assertIn(b"  by mx.example.com with UTF8ESMTP; ", mess)

    async def test_refused_without_parameter(self):
        """Without the parameter the UTF-8 sender is refused 553 (#5.6.7)
        (smtplib itself will not send UTF-8 then: it is told to)."""
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                client.ehlo()
                client.command_encoding = "utf-8"
                return client.mail(SENDER)
        code, text = await threads.deferToThread(run)
        self.assertEqual(code, 553)
        self.assertIn(b"#5.6.7", text)
        self.assertEqual(self.queued(), [])
