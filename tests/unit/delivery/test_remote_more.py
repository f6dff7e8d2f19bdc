"""Remote delivery, the deeper parts: IPv6 (AAAA) resolution, smtproutes
credentials, the client's AUTH helpers and the source-address settings."""

import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.testing import StringTransport
from twisted.names import client, dns, server
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.delivery import mx
from indimail.delivery.mx import MXAddress
from indimail.delivery.remote import RemoteDelivery, same_family
from indimail.delivery.smtpclient import (
    Reply, SMTPClientProtocol, auth_cram, auth_plain, choose_auth, ehlo_keywords, xtext)
from indimail.delivery.smtproutes import SmtpRoutes, parse_relay

from .support import control, make_home
from .test_mx import FakeResolver, MemoryAuthority, _rr


class FakeResolver6(FakeResolver):
    """FakeResolver with AAAA answers from ``addrs6``."""

    def __init__(self, addrs6=None, broken6=(), **kwargs):
        super().__init__(**kwargs)
        self.addrs6 = addrs6 or {}
        self.broken6 = set(broken6)

    def lookupIPV6Address(self, name):
        if name in self.broken6:
            return defer.fail(mx.dns_error.DNSServerError(name))
        return self._check(name) or defer.succeed((
            [_rr(name, dns.Record_AAAA(a)) for a in self.addrs6.get(name, [])], [], []))


class AAAATests(TestCase):

    async def test_a_and_aaaa_of_a_host(self):
        """A host's IPv4 addresses come first, then its IPv6 ones."""
        resolver = FakeResolver6(addrs={"h.test": ["10.0.0.1"]}, addrs6={"h.test": ["::1"]})
        self.assertEqual(await mx.resolve_relay(resolver, "h.test"),
                         [MXAddress(0, "h.test", "10.0.0.1"), MXAddress(0, "h.test", "::1")])

    async def test_ipv6_only_host(self):
        """A host with only AAAA records is reachable (implicit MX)."""
        resolver = FakeResolver6(addrs6={"v6.test": ["2001:db8::5"]})
        result = await mx.resolve_mx(resolver, "v6.test")
        self.assertEqual(result, [MXAddress(0, "v6.test", "2001:db8::5")])
        self.assertEqual(result[0].family, 6)

    async def test_mx_preference_kept_across_families(self):
        """MX preference orders hosts whatever their address family."""
        resolver = FakeResolver6(
            mxs={"d.test": [(20, "b.d.test"), (10, "a.d.test")]},
            addrs={"b.d.test": ["10.0.0.2"]}, addrs6={"a.d.test": ["2001:db8::1"]})
        result = await mx.resolve_mx(resolver, "d.test")
        self.assertEqual([(a.preference, a.address) for a in result],
                         [(10, "2001:db8::1"), (20, "10.0.0.2")])

    async def test_aaaa_failure_ignored_with_a(self):
        """A failing AAAA lookup does not hide the A records."""
        resolver = FakeResolver6(addrs={"h.test": ["10.0.0.1"]}, broken6={"h.test"})
        self.assertEqual([a.address for a in await mx.resolve_relay(resolver, "h.test")],
                         ["10.0.0.1"])

    async def test_soft_error_when_nothing_found(self):
        """Both families failing is a soft DNS error."""
        resolver = FakeResolver6(broken={"h.test"}, broken6={"h.test"})
        with self.assertRaises(mx.DNSSoftError):
            await mx.resolve_relay(resolver, "h.test")

    async def test_ipv6_glue(self):
        """AAAA glue in the additional section is used."""

        class Glue(FakeResolver6):
            def lookupMailExchange(self, name):
                return defer.succeed(([_rr(name, dns.Record_MX(10, "m.g.test"))], [],
                                      [_rr("m.g.test", dns.Record_AAAA("::1"))]))

        result = await mx.resolve_mx(Glue(), "g.test")
        self.assertEqual(result, [MXAddress(10, "m.g.test", "::1")])


class RealServerAAAATests(TestCase):
    """AAAA records from a twisted.names authoritative server on loopback."""

    def setUp(self):
        soa = dns.Record_SOA(mname=b"ns.six.test", rname=b"root.six.test", serial=1,
                             refresh=60, retry=60, expire=60, minimum=1, ttl=1)
        records = {
            b"six.test": [soa, dns.Record_MX(10, b"mx1.six.test"),
                          dns.Record_MX(20, b"mx2.six.test")],
            b"mx1.six.test": [dns.Record_AAAA("::1"), dns.Record_A("127.0.0.21")],
            b"mx2.six.test": [dns.Record_AAAA("2001:db8::2")],
            b"only6.six.test": [dns.Record_AAAA("::1")],
        }
        factory = server.DNSServerFactory(
            authorities=[MemoryAuthority((b"six.test", soa), records)])
        port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.resolver = client.Resolver(servers=[("127.0.0.1", port.getHost().port)],
                                        reactor=reactor)

    async def test_mx_with_aaaa(self):
        """Each MX host gives its A then AAAA addresses, in MX preference order."""
        result = await mx.resolve_mx(self.resolver, "six.test")
        self.assertEqual([(a.preference, a.address) for a in result],
                         [(10, "127.0.0.21"), (10, "::1"), (20, "2001:db8::2")])

    async def test_implicit_mx_aaaa(self):
        """Without MX, an IPv6-only name resolves to its AAAA address."""
        result = await mx.resolve_mx(self.resolver, "only6.six.test")
        self.assertEqual([a.address for a in result], ["::1"])


class CredentialsTests(SynchronousTestCase):

    def test_route_credentials(self):
        """``relay:port user password`` keeps the credentials on the route."""
        route = parse_relay("smart.test:587 alice s3cret")
        self.assertEqual((route.host, route.port), ("smart.test", 587))
        self.assertEqual(route.credentials, ("alice", "s3cret"))
        self.assertNotIn("s3cret", repr(route))

    def test_password_keeps_spaces(self):
        """The password is the rest of the line after the user."""
        self.assertEqual(parse_relay("h:25 u pass word").credentials, ("u", "pass word"))

    def test_incomplete_credentials(self):
        """A user without password means no credentials."""
        self.assertIsNone(parse_relay("h:25 alice").credentials)
        self.assertIsNone(parse_relay("h:25").credentials)

    def test_smtproute_variable_with_credentials(self):
        """SMTPROUTE carries credentials like control/smtproutes."""
        routes = SmtpRoutes.from_variable("x.test:relay.test:2525 bob pw")
        self.assertEqual(routes.lookup("x.test").credentials, ("bob", "pw"))


class ClientAuthTests(SynchronousTestCase):

    def test_ehlo_keywords(self):
        """EHLO lines become keywords; ``AUTH=`` is read as AUTH."""
        reply = Reply(250, "250-me\n250-SIZE 100\n250-AUTH=LOGIN\n250-starttls\n250 AUTH PLAIN")
        self.assertEqual(ehlo_keywords(reply), {"SIZE": "100", "AUTH": "LOGIN", "STARTTLS": ""})

    def test_preference(self):
        """Automatic choice follows qmail-remote: CRAM-*, then PLAIN, then LOGIN."""
        self.assertEqual(choose_auth("PLAIN LOGIN", ""), "PLAIN")
        self.assertEqual(choose_auth("PLAIN", ""), "PLAIN")
        self.assertEqual(choose_auth("PLAIN LOGIN CRAM-MD5", ""), "CRAM-MD5")
        self.assertEqual(choose_auth("CRAM-SHA1 CRAM-SHA256", ""), "CRAM-SHA256")
        self.assertEqual(choose_auth("PLAIN LOGIN", "", {"PLAIN"}), "LOGIN")
        self.assertIsNone(choose_auth("GSSAPI", ""))

    def test_named_mechanism(self):
        """A named AUTH_SMTP mechanism is used only when offered."""
        self.assertEqual(choose_auth("PLAIN LOGIN", "plain"), "PLAIN")
        self.assertIsNone(choose_auth("LOGIN", "PLAIN"))

    def test_plain(self):
        """PLAIN is NUL user NUL password in base64."""
        self.assertEqual(auth_plain("tim", "tanstaaf"), "AHRpbQB0YW5zdGFhZg==")

    def test_cram_md5_rfc2195(self):
        """The CRAM-MD5 answer matches RFC 2195's example."""
        import base64
        challenge = base64.b64encode(b"<1896.697170952@postoffice.reston.mci.net>").decode()
        self.assertEqual(base64.b64decode(auth_cram("CRAM-MD5", "tim", "tanstaaftanstaaf",
                                                    challenge)),
                         b"tim b913a602c7eda7a495b4e6e7334d3890")

    def test_xtext(self):
        """AUTH= parameters are xtext-encoded."""
        self.assertEqual(xtext("a+b=c d"), "a+2Bb+3Dc+20d")


class TLSCapable(StringTransport):
    def startTLS(self, options):
        self.tls_options = options


class StartTLSBufferTests(TestCase):

    async def test_clear_text_after_220_ignored(self):
        """Replies sent in clear text right after the 220 to STARTTLS are thrown
        away, never taken as answers inside TLS."""
        class TLSCapable(StringTransport):
            def startTLS(self, options):
                self.tls_options = options

        proto = SMTPClientProtocol()
        proto.makeConnection(TLSCapable())
        proto.dataReceived(b"220 go ahead\r\n250 injected\r\n")
        self.assertEqual((await proto.next_reply()).code, 220)
        self.assertTrue(proto.start_tls(object()))
        waiting = proto.next_reply()
        self.assertNoResult(waiting)
        proto.dataReceived(b"250 real\r\n")
        self.assertEqual((await waiting).text, "250 real")


class BindingSettingsTests(SynchronousTestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)

    def agent(self, **env):
        return RemoteDelivery(self.home, control(self.home), reactor=reactor, env=env,
                              resolver=FakeResolver())

    def write(self, name, text):
        (self.home.control / name).write_text(text)

    def test_no_binding(self):
        """Without outgoingip nothing is bound."""
        self.assertIsNone(self.agent().settings("r.test", "a@b.test").bind_ip)

    def test_outgoingip_control(self):
        """control/outgoingip gives the source address; per-domain files win."""
        self.write("outgoingip", "127.0.0.2\n")
        self.assertEqual(self.agent().settings("r.test", "a@b.test").bind_ip, "127.0.0.2")
        self.write("outgoingip.r.test", "127.0.0.3\n")
        self.assertEqual(self.agent().settings("r.test", "a@b.test").bind_ip, "127.0.0.3")

    def test_outgoingip_env(self):
        """OUTGOINGIP overrides the control files; 0.0.0.0 means unbound."""
        self.write("outgoingip", "127.0.0.2\n")
        self.assertEqual(self.agent(OUTGOINGIP="127.0.0.4").settings("r", "a@b").bind_ip,
                         "127.0.0.4")
        self.assertIsNone(self.agent(OUTGOINGIP="0.0.0.0").settings("r", "a@b").bind_ip)

    def test_domainbindings(self):
        """domainbindings binds by sender address or domain and HELOs as that domain."""
        self.write("outgoingip", "127.0.0.2\n")
        self.write("domainbindings", "boss@corp.test:127.0.0.9\n.corp.test:127.0.0.8\n")
        agent = self.agent()
        settings = agent.settings("r.test", "boss@corp.test")
        self.assertEqual((settings.bind_ip, settings.helo), ("127.0.0.9", "corp.test"))
        settings = agent.settings("r.test", "x@sub.corp.test")
        self.assertEqual((settings.bind_ip, settings.helo), ("127.0.0.8", "sub.corp.test"))
        settings = agent.settings("r.test", "x@other.test")
        self.assertEqual((settings.bind_ip, settings.helo), ("127.0.0.2", "mx.example.com"))
        self.assertEqual(agent.settings("r.test", "").bind_ip, "127.0.0.2")

    def test_auth_needs_variable_and_credentials(self):
        """AUTH is attempted only with AUTH_SMTP set and credentials in the route."""
        route = ":relay.test:587 u p"
        self.assertIsNone(self.agent(SMTPROUTE=route).settings("r", "a@b").auth)
        self.assertEqual(self.agent(SMTPROUTE=route, AUTH_SMTP="").settings("r", "a@b").auth,
                         "")
        self.assertIsNone(self.agent(SMTPROUTE=":relay.test:587",
                                     AUTH_SMTP="").settings("r", "a@b").auth)

    def test_same_family(self):
        """A source address is only bound for targets of its family."""
        self.assertTrue(same_family("127.0.0.2", "10.0.0.1"))
        self.assertFalse(same_family("127.0.0.2", "::1"))
