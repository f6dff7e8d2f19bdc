"""X-Originating-IP with a real service and queue (ORIGINIPFIELD)."""

from __future__ import annotations

import smtplib

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.integration.smtp.test_bdat import Server


class OriginatingTest(Server, TestCase):

    ENV = {"ORIGINIPFIELD": "1"}

    async def test_header_on_relayed_mail(self):
        """Loopback may relay (RELAYCLIENT from tcp.smtp): the queued message is
        the queue's Received line, ``X-Originating-IP: 127.0.0.1``, smtpd's
        Received line, then the message — upstream qmail-queue's order."""
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                return client.sendmail("a@sender.example", ["b@remote.example"],
                                       b"Subject: o\r\n\r\no\r\n")
        self.assertEqual(await threads.deferToThread(run), {})
        [(_, mess, _)] = self.queued()
        lines = mess.split(b"\n")
        self.assertTrue(lines[0].startswith(b"Received: (indimail-mta "), lines[0])
        self.assertEqual(lines[1], b"X-Originating-IP: 127.0.0.1")
        self.assertTrue(lines[2].startswith(b"Received: indimail-mta smtpd "), lines[2])
