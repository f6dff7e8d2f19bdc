"""relayclients, relaydomains and relaymailfrom grant relaying through rcpthosts."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from indimail.config.cdb import make_control_cdb
from indimail.policy.relay_lists import ip_prefixes, parse_relay_map

from .support import PolicyHarness

NO_RELAY = 553


class RelayListsTest(TestCase):

    def test_parsing(self):
        """relay map lines are ``key:suffix``; IP keys are cut after dots."""
        self.assertEqual(parse_relay_map(b"192.168.1.:\n10.0.0.1:+ext\n# c\nHost.Example\n"),
                         {"192.168.1.": "", "10.0.0.1": "+ext", "host.example": ""})
        self.assertEqual(ip_prefixes("10.1.2.3"), ["10.1.2.3", "10.1.2.", "10.1.", "10."])

    async def test_relayclients_prefix(self):
        """An IP prefix in relayclients may relay (another prefix grants
        nothing); the suffix after the colon is appended to recipients, as
        RELAYCLIENT's value is."""
        h = PolicyHarness(self, {"relayclients": "192.0.2.:\n"})
        await h.start()
        await h.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h.code("RCPT TO:<x@remote.example>"), 250)
        self.assertEqual(h.session.env["RELAYCLIENT"], "")
        h2 = PolicyHarness(self, {"clients": "192.0.2.7:+tag\n"}, env={"RELAYCLIENTS": "clients"})
        await h2.start()
        await h2.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h2.code("RCPT TO:<x@remote.example>"), 250)
        self.assertEqual(h2.session.transaction.recipients, ["x@remote.example+tag"])
        h3 = PolicyHarness(self, {"relayclients": "192.0.2.70\n198.51.:\n"})
        await h3.start()
        await h3.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h3.code("RCPT TO:<x@remote.example>"), NO_RELAY)

    async def test_relaydomains(self):
        """TCPREMOTEHOST under a ``.domain`` (or equal to a host) line may relay."""
        files = {"relaydomains": ".trusted.example:\nexact.example:\n"}
        for host, code in (("mx.trusted.example", 250), ("exact.example", 250),
                           ("trusted.example.evil", NO_RELAY)):
            h = PolicyHarness(self, files, env={"TCPREMOTEHOST": host})
            await h.start()
            await h.ask("MAIL FROM:<a@sender.example>")
            self.assertEqual(await h.code("RCPT TO:<x@remote.example>"), code, host)

    async def test_relaymailfrom(self):
        """A sender in relaymailfrom (address or @domain, here cdb) may relay in its
        own transaction only."""
        h = PolicyHarness(self, {"relaymailfrom": "joeblow@domain1.example\n@domain2.example\n"})
        make_control_cdb(h.directory, "relaymailfrom")
        (h.control.directory / "relaymailfrom").unlink()
        await h.start()
        await h.ask("MAIL FROM:<JoeBlow@domain1.example>")
        self.assertEqual(await h.code("RCPT TO:<x@remote.example>"), 250)
        await h.ask("RSET")
        await h.ask("MAIL FROM:<any@domain2.example>")
        self.assertEqual(await h.code("RCPT TO:<x@remote.example>"), 250)
        await h.ask("RSET")
        await h.ask("MAIL FROM:<other@domain1.example>")
        self.assertEqual(await h.code("RCPT TO:<x@remote.example>"), NO_RELAY)
