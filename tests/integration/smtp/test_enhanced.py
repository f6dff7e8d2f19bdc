"""ENHANCEDSTATUSCODES with Python's smtplib against a real service."""

from __future__ import annotations

import smtplib

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from indimail.config.tcprules import compile_tcprules
from tests.integration.smtp.test_bdat import Server


class EnhancedTest(Server, TestCase):

    ENV = {"ENHANCEDSTATUSCODES": "1"}

    async def test_codes_on_replies(self):
        """The variable makes EHLO offer ENHANCEDSTATUSCODES; replies then
        start with their code and keep upstream's text."""
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                client.ehlo()
                return (client.has_extn("enhancedstatuscodes"),
                        client.mail("a@sender.example"), client.rcpt("b@mx.example.com"),
                        client.data(b"Subject: x\r\n\r\nx\r\n"), client.rset())
        offered, mail, rcpt, data, rset = await threads.deferToThread(run)
        self.assertTrue(offered)
        self.assertEqual(mail, (250, b"2.1.0 ok"))
        self.assertEqual(rcpt, (250, b"2.1.5 ok"))
        self.assertEqual(data[0], 250)
        self.assertRegex(data[1].decode(), r"^2\.0\.0 ok \d+ qp \d+$")
        self.assertEqual(rset, (250, b"2.0.0 flushed"))

    async def test_refusal_code(self):
        """A refused relay: 553 5.7.1 and upstream's words."""
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=30) as client:
                client.ehlo("client.example")
                client.mail("a@sender.example")
                return client.rcpt("b@elsewhere.example")
        # loopback may relay in a fresh home: take that away for this test
        source = self.home.tcp / "tcp.smtp"
        source.write_text("127.0.0.1:allow\n")
        compile_tcprules(source, source.with_name("tcp.smtp.cdb"))
        code, text = await threads.deferToThread(run)
        self.assertEqual(code, 553)
        self.assertTrue(text.startswith(b"5.7.1 sorry, that domain isn't allowed"), text)
