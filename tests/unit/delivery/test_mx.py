"""MX resolution: preference order, A fallback, literals, DNS errors —
with a fake resolver and with a real twisted.names server on loopback."""

import random

from twisted.internet import defer, reactor
from twisted.names import authority, client, common, dns, error, server
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.delivery import mx
from indimail.delivery.mx import MXAddress


def _rr(name, payload):
    return dns.RRHeader(name=name, type=payload.TYPE, payload=payload)


class FakeResolver:
    """Answers from dicts: name → list of (pref, mxname) / list of IPs."""

    def __init__(self, mxs=None, addrs=None, missing=(), broken=()):
        self.mxs = mxs or {}
        self.addrs = addrs or {}
        self.missing = set(missing)
        self.broken = set(broken)
        self.queries = []

    def _check(self, name):
        self.queries.append(name)
        if name in self.missing:
            return defer.fail(error.DNSNameError(name))
        if name in self.broken:
            return defer.fail(error.DNSServerError(name))
        return None

    def lookupMailExchange(self, name):
        return self._check(name) or defer.succeed((
            [_rr(name, dns.Record_MX(p, n)) for p, n in self.mxs.get(name, [])], [], []))

    def lookupAddress(self, name):
        return self._check(name) or defer.succeed((
            [_rr(name, dns.Record_A(a)) for a in self.addrs.get(name, [])], [], []))


class LiteralTests(SynchronousTestCase):

    def test_literals(self):
        """Plain and bracketed IPs are literal addresses; names are not."""
        self.assertEqual(mx.literal("127.0.0.1"), "127.0.0.1")
        self.assertEqual(mx.literal("[127.0.0.1]"), "127.0.0.1")
        self.assertEqual(mx.literal("[IPv6:::1]"), "::1")
        self.assertIsNone(mx.literal("example.com"))


class FakeResolverTests(TestCase):

    async def test_preference_order(self):
        """Addresses come in ascending MX preference."""
        resolver = FakeResolver(
            mxs={"example.com": [(20, "b.example.com"), (10, "a.example.com")]},
            addrs={"a.example.com": ["10.0.0.1"], "b.example.com": ["10.0.0.2", "10.0.0.3"]})
        result = await mx.resolve_mx(resolver, "example.com", random.Random(1))
        self.assertEqual(result, [MXAddress(10, "a.example.com", "10.0.0.1"),
                                  MXAddress(20, "b.example.com", "10.0.0.2"),
                                  MXAddress(20, "b.example.com", "10.0.0.3")])

    async def test_equal_preferences_shuffled(self):
        """MX hosts of equal preference are tried in a random order."""
        resolver = FakeResolver(
            mxs={"example.com": [(10, f"m{i}.example.com") for i in range(8)]},
            addrs={f"m{i}.example.com": [f"10.0.0.{i}"] for i in range(8)})
        orders = set()
        for seed in range(5):
            result = await mx.resolve_mx(resolver, "example.com", random.Random(seed))
            orders.add(tuple(a.address for a in result))
        self.assertGreater(len(orders), 1)

    async def test_no_mx_uses_a(self):
        """Without MX records the domain's own address is used."""
        resolver = FakeResolver(addrs={"example.com": ["10.0.0.9"]})
        self.assertEqual(await mx.resolve_mx(resolver, "example.com"),
                         [MXAddress(0, "example.com", "10.0.0.9")])

    async def test_nxdomain_is_hard(self):
        """A domain that does not exist is a hard error."""
        with self.assertRaises(mx.DNSHardError):
            await mx.resolve_mx(FakeResolver(missing={"nope.test"}), "nope.test")

    async def test_server_failure_is_soft(self):
        """A failing lookup is a soft error."""
        with self.assertRaises(mx.DNSSoftError):
            await mx.resolve_mx(FakeResolver(broken={"x.test"}), "x.test")

    async def test_skips_unresolvable_mx(self):
        """An MX host whose name does not exist is skipped."""
        resolver = FakeResolver(
            mxs={"example.com": [(5, "gone.example.com"), (10, "ok.example.com")]},
            addrs={"ok.example.com": ["10.0.0.1"]}, missing={"gone.example.com"})
        result = await mx.resolve_mx(resolver, "example.com")
        self.assertEqual([a.address for a in result], ["10.0.0.1"])

    async def test_literal_needs_no_dns(self):
        """A literal domain is not looked up."""
        resolver = FakeResolver()
        self.assertEqual(await mx.resolve_mx(resolver, "[10.1.2.3]"),
                         [MXAddress(0, "[10.1.2.3]", "10.1.2.3")])
        self.assertEqual(resolver.queries, [])

    async def test_relay_addresses(self):
        """A relay host resolves through its A records."""
        resolver = FakeResolver(addrs={"relay.test": ["10.0.0.5"]})
        self.assertEqual(await mx.resolve_relay(resolver, "relay.test"),
                         [MXAddress(0, "relay.test", "10.0.0.5")])


class MemoryAuthority(authority.FileAuthority):
    """An authority from in-memory records (no zone file)."""

    def __init__(self, soa, records):
        common.ResolverBase.__init__(self)
        self.soa, self.records = soa, records


class RealServerTests(TestCase):

    def setUp(self):
        soa = dns.Record_SOA(mname=b"ns.example.test", rname=b"root.example.test",
                             serial=1, refresh=60, retry=60, expire=60, minimum=1, ttl=1)
        records = {
            b"example.test": [soa, dns.Record_MX(20, b"mx2.example.test"),
                              dns.Record_MX(10, b"mx1.example.test")],
            b"mx1.example.test": [dns.Record_A("127.0.0.11")],
            b"mx2.example.test": [dns.Record_A("127.0.0.12")],
            b"plain.example.test": [dns.Record_A("127.0.0.13")],
        }
        factory = server.DNSServerFactory(
            authorities=[MemoryAuthority((b"example.test", soa), records)])
        protocol = dns.DNSDatagramProtocol(factory)
        self.port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.resolver = client.Resolver(
            servers=[("127.0.0.1", self.port.getHost().port)], reactor=reactor)

    async def test_mx_order(self):
        """MX records from a real server come back in preference order."""
        result = await mx.resolve_mx(self.resolver, "example.test")
        self.assertEqual([(a.preference, a.address) for a in result],
                         [(10, "127.0.0.11"), (20, "127.0.0.12")])

    async def test_a_fallback(self):
        """A name with only an A record resolves to it."""
        result = await mx.resolve_mx(self.resolver, "plain.example.test")
        self.assertEqual([a.address for a in result], ["127.0.0.13"])

    async def test_nxdomain(self):
        """A name missing from the zone is a hard error."""
        with self.assertRaises(mx.DNSHardError):
            await mx.resolve_mx(self.resolver, "missing.example.test")
