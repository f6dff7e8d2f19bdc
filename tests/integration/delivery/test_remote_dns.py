"""MX resolution against a twisted.names authoritative server on loopback:
preference order with random order among equal preferences, CNAME aliases
(for the domain and for MX hosts), IPv6, and qmail's rewriting of the
recipient's domain to its canonical name."""

import random

from twisted.internet import reactor
from twisted.names import client, dns, server

from indimail.delivery import mx
from indimail.delivery.remote import RemoteDelivery
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import MemoryAuthority

from .smtpserver import ScriptedFactory, ScriptedServerCase

SOA = dns.Record_SOA(mname=b"ns.zone.test", rname=b"root.zone.test", serial=1, refresh=60,
                     retry=60, expire=60, minimum=1, ttl=1)
RECORDS = {
    b"zone.test": [SOA],
    b"equal.zone.test": [dns.Record_MX(10, f"m{i}.zone.test".encode()) for i in range(6)]
    + [dns.Record_MX(5, b"best.zone.test"), dns.Record_MX(50, b"last.zone.test")],
    b"best.zone.test": [dns.Record_A("127.0.0.20")],
    b"last.zone.test": [dns.Record_A("127.0.0.30")],
    **{f"m{i}.zone.test".encode(): [dns.Record_A(f"127.0.0.{i + 1}")] for i in range(6)},
    b"alias.zone.test": [dns.Record_CNAME(b"real.zone.test")],
    b"real.zone.test": [dns.Record_MX(10, b"mxhost.zone.test")],
    b"mxhost.zone.test": [dns.Record_CNAME(b"box.zone.test")],
    b"box.zone.test": [dns.Record_A("127.0.0.1"), dns.Record_AAAA("::1")],
    b"v6only.zone.test": [dns.Record_MX(10, b"six.zone.test")],
    b"six.zone.test": [dns.Record_AAAA("::1")],
    b"loop1.zone.test": [dns.Record_CNAME(b"loop2.zone.test")],
    b"loop2.zone.test": [dns.Record_CNAME(b"loop1.zone.test")],
}


def start_dns(testcase):
    factory = server.DNSServerFactory(authorities=[MemoryAuthority((b"zone.test", SOA),
                                                                   RECORDS)])
    port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return client.Resolver(servers=[("127.0.0.1", port.getHost().port)], reactor=reactor)


class ResolveTests(ScriptedServerCase):
    factory_class = ScriptedFactory

    def setUp(self):
        super().setUp()
        self.resolver = start_dns(self)

    async def test_preference_and_random_ties(self):
        """The lowest preference comes first and the highest last; hosts of
        equal preference come in an order that varies with the random source."""
        orders = set()
        for seed in range(6):
            result = await mx.resolve_mx(self.resolver, "equal.zone.test", random.Random(seed))
            addresses = [a.address for a in result]
            self.assertEqual(addresses[0], "127.0.0.20")
            self.assertEqual(addresses[-1], "127.0.0.30")
            self.assertEqual(sorted(addresses[1:-1]), [f"127.0.0.{i}" for i in range(1, 7)])
            orders.add(tuple(addresses[1:-1]))
        self.assertGreater(len(orders), 1)

    async def test_cname_domain_and_mx_host(self):
        """A domain that is a CNAME uses its target's MX; an MX host that is
        a CNAME resolves through it, A then AAAA."""
        result = await mx.resolve_mx(self.resolver, "alias.zone.test")
        self.assertEqual([(a.preference, a.address) for a in result],
                         [(10, "127.0.0.1"), (10, "::1")])

    async def test_ipv6_only_mx(self):
        """An MX host with only an AAAA record gives its IPv6 address."""
        result = await mx.resolve_mx(self.resolver, "v6only.zone.test")
        self.assertEqual([a.address for a in result], ["::1"])

    async def test_canonical(self):
        """canonical() follows CNAMEs, keeps names that are no alias or do
        not exist, and gives up on a loop (keeping the name)."""
        self.assertEqual(await mx.canonical(self.resolver, "alias.zone.test"), "real.zone.test")
        self.assertEqual(await mx.canonical(self.resolver, "real.zone.test"), "real.zone.test")
        self.assertEqual(await mx.canonical(self.resolver, "gone.zone.test"), "gone.zone.test")
        self.assertEqual(await mx.canonical(self.resolver, "loop1.zone.test"),
                         "loop1.zone.test")

    async def test_delivery_rewrites_recipient(self):
        """Delivering to a CNAME'd domain goes to its MX and, as qmail-remote
        does, names the canonical domain in RCPT TO (DISABLE_CNAME_LOOKUP
        keeps the address as it was)."""
        server, port = self.serve()

        class FixedPort(RemoteDelivery):
            async def _connect(self, address, _port, *args):
                return await super()._connect(address, port, *args)

        for env, rcpt in (({}, "RCPT TO:<carol@real.zone.test>"),
                          ({"DISABLE_CNAME_LOOKUP": "1"}, "RCPT TO:<carol@alias.zone.test>")):
            agent = FixedPort(self.home, control(self.home), reactor=reactor, env=env,
                              resolver=self.resolver)
            result = await agent.deliver(self.queue, self.msgid, "bob@example.org",
                                         "carol@alias.zone.test")
            self.assertEqual(result.status, "success", result.report)
            self.assertIn(rcpt, server.commands)
