"""Delivery-time filters on remote deliveries: the DeliveryAgent hook runs
the filter before qmail-remote's work, against a real SMTP server."""

import os

from twisted.internet import reactor

from indimail.delivery.remote import RemoteDelivery
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedFactory, ScriptedServerCase


class RemoteFilterTests(ScriptedServerCase):
    factory_class = ScriptedFactory
    BODY = b"Subject: test\n\nhello world\n"

    def agent(self, port, **env):
        env = {"PATH": os.environ.get("PATH", "/bin"), "SMTPROUTE": f":127.0.0.1:{port}",
               **env}
        return RemoteDelivery(self.home, control(self.home), reactor=reactor, env=env,
                              resolver=FakeResolver())

    def deliver(self, agent, recipient="carol@yahoo.com"):
        return agent.deliver(self.queue, self.msgid, "bob@example.org", recipient, None)

    async def test_remote_line_filters_outgoing_mail(self):
        """``yahoo.com:remote:`` in filterargs rewrites mail to yahoo.com as
        it goes out; the ``:local:`` line is not used for remote mail."""
        (self.home.control / "filterargs").write_text(
            "yahoo.com:local:sed s/hello/LOCAL/\nyahoo.com:remote:sed s/hello/REMOTE/\n")
        server, port = self.serve()
        result = await self.deliver(self.agent(port))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.messages, [b"Subject: test\r\n\r\nREMOTE world\r\n"])

    async def test_other_domain_unfiltered(self):
        """A domain without a filterargs line goes out unchanged."""
        (self.home.control / "filterargs").write_text("yahoo.com:sed s/hello/X/\n")
        server, port = self.serve()
        result = await self.deliver(self.agent(port), "dan@other.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.messages, [b"Subject: test\r\n\r\nhello world\r\n"])

    async def test_reject_never_connects(self):
        """A filter exiting 100 bounces before any connection is made."""
        server, port = self.serve()
        result = await self.deliver(self.agent(port, FILTERARGS="exit 100"))
        self.assertEqual((result.status, result.report), ("failure", "Mail Rejected (#5.7.1)"))
        self.assertEqual(server.connections, 0)

    async def test_rcpt_envrules_set_filter(self):
        """rcpt.envrules can set FILTERARGS for one recipient domain only."""
        (self.home.control / "rcpt.envrules").write_text("*@yahoo.com:FILTERARGS=exit 2\n")
        server, port = self.serve()
        agent = self.agent(port)
        result = await self.deliver(agent)
        self.assertEqual((result.status, result.report), ("success", "blackholed exit 2"))
        result = await self.deliver(agent, "dan@other.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(len(server.messages), 1)
