"""RemoteDelivery over the network, the deeper parts: IPv6 MX hosts found
through a twisted.names server on loopback, SMTP AUTH to a smarthost,
opportunistic STARTTLS and source-address binding."""

import base64
import datetime
import hashlib
import hmac
import os

from twisted.internet import defer, reactor, ssl
from twisted.names import client, dns, server

from indimail.config.certs import self_signed_pem
from indimail.delivery.remote import RemoteDelivery
from tests.integration.smtp.test_tlsauth import PASSWORD, USER, TLSAuthBase
from tests.unit.delivery.support import control, make_home, queue_message
from tests.unit.delivery.test_mx import FakeResolver, MemoryAuthority
from tests.unit.delivery.test_remote_more import FakeResolver6

from .smtpserver import ScriptedFactory, ScriptedServerCase, ScriptedSMTP

BODY = b"Subject: test\n\nbody\n"
_PEM = []


def server_tls_options():
    """A self-signed certificate, made once per test run."""
    if not _PEM:
        _PEM.append(self_signed_pem("localhost", datetime.datetime.now(datetime.timezone.utc),
                                    key_size=2048))
    return ssl.PrivateCertificate.loadPEM(_PEM[0]).options()


class AuthSMTP(ScriptedSMTP):
    """ScriptedSMTP plus AUTH PLAIN/LOGIN/CRAM-MD5, STARTTLS and a record of
    the peer's address and whether each command came over TLS."""

    def connectionMade(self):
        self.auth = None
        self.tls = False
        self.factory.peers.append(self.transport.getPeer().host)
        super().connectionMade()

    def _send(self, text):
        self.transport.write(text.encode() + b"\r\n")

    def lineReceived(self, line):
        if self.auth is not None:
            return self._auth_step(line.decode())
        if not self.in_data:
            self.factory.secure.append((line.decode().split(" ")[0], self.tls))
        upper = line.upper()
        if upper == b"STARTTLS":
            self.factory.commands.append("STARTTLS")
            if self.factory.starttls_reply == "220 garbage":
                self.transport.write(b"220 garbage\r\n")
                self.setRawMode()  # answer the ClientHello with clear text
            elif self.factory.starttls_reply[:3] == "220":
                self._send(self.factory.starttls_reply)
                self.transport.startTLS(server_tls_options())
                self.tls = True
            else:
                self._send(self.factory.starttls_reply)
            return
        if upper.startswith(b"AUTH "):
            self.factory.commands.append(line.decode())
            mech = line.decode().split(" ")[1].upper()
            self.auth = [mech]
            if mech == "PLAIN":
                self._send("334 ")
            elif mech == "LOGIN":
                self._send("334 VXNlcm5hbWU6")
            elif mech == "CRAM-MD5":
                self.challenge = b"<1.2@test>"
                self._send("334 " + base64.b64encode(self.challenge).decode())
            else:
                self.auth = None
                self._send("504 unknown")
            return
        super().lineReceived(line)

    def rawDataReceived(self, data):
        self.transport.write(b"this is not TLS at all\r\n" * 8)

    def _auth_step(self, text):
        mech = self.auth[0]
        self.auth.append(base64.b64decode(text))
        user, password = self.factory.account
        if mech == "LOGIN" and len(self.auth) == 2:
            self._send("334 UGFzc3dvcmQ6")
            return
        if mech == "PLAIN":
            ok = self.auth[1] == b"\0" + user.encode() + b"\0" + password.encode()
        elif mech == "LOGIN":
            ok = self.auth[1:] == [user.encode(), password.encode()]
        else:
            digest = hmac.new(password.encode(), self.challenge, hashlib.md5).hexdigest()
            ok = self.auth[1] == f"{user} {digest}".encode()
        self.factory.auth_results.append((mech, ok))
        self.auth = None
        self._send("235 ok" if ok else "535 no")


class AuthFactory(ScriptedFactory):
    protocol = AuthSMTP

    def __init__(self, account=("alice", "s3cret"), starttls_reply="220 go ahead", **replies):
        super().__init__(**replies)
        self.account = account
        self.starttls_reply = starttls_reply
        self.peers = []
        self.secure = []
        self.auth_results = []


class Base(ScriptedServerCase):
    factory_class = AuthFactory
    BODY = BODY

    def agent(self, resolver=None, cls=RemoteDelivery, **env):
        return cls(self.home, control(self.home), reactor=reactor, env=env,
                   resolver=resolver or FakeResolver())

    def deliver(self, agent, sender="bob@example.org", recipient="carol@remote.test"):
        return agent.deliver(self.queue, self.msgid, sender, recipient)


class IPv6Tests(Base):
    """MX and relay hosts with AAAA records, served by twisted.names."""

    def setUp(self):
        super().setUp()
        soa = dns.Record_SOA(mname=b"ns.remote.test", rname=b"root.remote.test", serial=1,
                             refresh=60, retry=60, expire=60, minimum=1, ttl=1)
        records = {
            b"remote.test": [soa, dns.Record_MX(10, b"mx1.remote.test"),
                             dns.Record_MX(20, b"mx2.remote.test")],
            b"mx1.remote.test": [dns.Record_A("127.0.0.1"), dns.Record_AAAA("::1")],
            b"mx2.remote.test": [dns.Record_A("127.0.0.3")],
            b"six.remote.test": [dns.Record_AAAA("::1")],
        }
        factory = server.DNSServerFactory(
            authorities=[MemoryAuthority((b"remote.test", soa), records)])
        port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.resolver = client.Resolver(servers=[("127.0.0.1", port.getHost().port)],
                                        reactor=reactor)

    async def test_relay_over_ipv6(self):
        """A route to an IPv6-only host connects to its AAAA address."""
        server, port = self.serve(interface="::1")
        result = await self.deliver(self.agent(self.resolver,
                                               SMTPROUTE=f":six.remote.test:{port}"))
        self.assertEqual(result.status, "success", result.report)
        self.assertIn("::1 accepted message - Protocol SMTP.", result.report)
        self.assertEqual(server.peers, ["::1"])
        self.assertEqual(len(server.messages), 1)

    async def test_mx_a_then_aaaa(self):
        """Through MX: the best MX's A address refuses (4xx greeting), so its AAAA
        address is tried next, before the worse MX."""
        busy, port = self.serve(greeting="421 busy")
        good, _ = self.serve(interface="::1", port=port)

        class FixedPort(RemoteDelivery):
            async def _connect(self, address, _port, timeout, tls=False, bind=None):
                self.tried = getattr(self, "tried", []) + [address]
                return await super()._connect(address, port, timeout, tls, bind)

        agent = self.agent(self.resolver, cls=FixedPort)
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(agent.tried, ["127.0.0.1", "::1"])
        self.assertEqual(len(good.messages), 1)


class AuthTests(Base):
    """SMTP AUTH to a smarthost named in SMTPROUTE with credentials."""

    async def test_plain_preferred(self):
        """With PLAIN and LOGIN offered, AUTH_SMTP="" picks PLAIN (current
        qmail-remote's order) and MAIL FROM carries AUTH=<user>."""
        server, port = self.serve(ehlo="250-test\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 100000")
        agent = self.agent(SMTPROUTE=f":127.0.0.1:{port} alice s3cret", AUTH_SMTP="")
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.auth_results, [("PLAIN", True)])
        self.assertIn(f"MAIL FROM:<bob@example.org> SIZE={len(BODY)} AUTH=<alice>",
                      server.commands)

    async def test_plain(self):
        """A server offering only PLAIN gets AUTH PLAIN."""
        server, port = self.serve(ehlo="250-test\r\n250 AUTH PLAIN")
        agent = self.agent(SMTPROUTE=f":127.0.0.1:{port} alice s3cret", AUTH_SMTP="")
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.auth_results, [("PLAIN", True)])
        self.assertIn("MAIL FROM:<bob@example.org> AUTH=<alice>", server.commands)

    async def test_named_mechanism(self):
        """AUTH_SMTP=PLAIN uses PLAIN even when LOGIN is offered."""
        server, port = self.serve(ehlo="250-test\r\n250 AUTH LOGIN PLAIN CRAM-MD5")
        agent = self.agent(SMTPROUTE=f":127.0.0.1:{port} alice s3cret", AUTH_SMTP="PLAIN")
        await self.deliver(agent)
        self.assertEqual(server.auth_results, [("PLAIN", True)])

    async def test_cram_md5(self):
        """CRAM-MD5 is preferred over LOGIN and PLAIN when offered."""
        server, port = self.serve(ehlo="250-test\r\n250 AUTH LOGIN PLAIN CRAM-MD5")
        agent = self.agent(SMTPROUTE=f":127.0.0.1:{port} alice s3cret", AUTH_SMTP="")
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.auth_results, [("CRAM-MD5", True)])

    async def test_rejected_credentials(self):
        """A 535 defers with qmail-remote's text."""
        server, port = self.serve(ehlo="250-test\r\n250 AUTH PLAIN")
        agent = self.agent(SMTPROUTE=f":127.0.0.1:{port} alice wrong", AUTH_SMTP="")
        result = await self.deliver(agent)
        self.assertEqual((result.status, result.report), (
            "deferral", "Connected to 127.0.0.1 but authentication was rejected (plain).\n"
            "Remote host said: 535 no"))
        self.assertFalse(any(c.startswith("MAIL") for c in server.commands))

    async def test_no_auth_without_variable(self):
        """Without AUTH_SMTP the credentials are not used (as in qmail-remote)."""
        server, port = self.serve(ehlo="250-test\r\n250 AUTH PLAIN")
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port} alice s3cret"))
        self.assertEqual(result.status, "success")
        self.assertEqual(server.auth_results, [])

    async def test_no_common_mechanism(self):
        """No usable mechanism: the mail goes on unauthenticated."""
        server, port = self.serve(ehlo="250-test\r\n250 AUTH GSSAPI")
        agent = self.agent(SMTPROUTE=f":127.0.0.1:{port} alice s3cret", AUTH_SMTP="")
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success")
        self.assertIn("MAIL FROM:<bob@example.org>", server.commands)


class StartTLSTests(Base):
    """Opportunistic STARTTLS when the peer offers it."""

    async def test_starttls(self):
        """STARTTLS is used when offered; EHLO is repeated and the whole
        transaction runs over TLS; the report text is unchanged."""
        server, port = self.serve(ehlo="250-test\r\n250-STARTTLS\r\n250 SIZE 100000")
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual(result.report,
                         "From: <bob@example.org> RCPT: <carol@remote.test> 127.0.0.1 "
                         "accepted message - Protocol SMTP.\nRemote host said: 250 ok queued")
        self.assertEqual(server.secure[:3], [("EHLO", False), ("STARTTLS", False),
                                             ("EHLO", True)])
        self.assertTrue(all(tls for _verb, tls in server.secure[2:]))
        self.assertEqual(server.messages, [b"Subject: test\r\n\r\nbody\r\n"])

    async def test_starttls_then_auth(self):
        """AUTH happens after the TLS EHLO."""
        server, port = self.serve(ehlo="250-test\r\n250-STARTTLS\r\n250 AUTH PLAIN")
        agent = self.agent(SMTPROUTE=f":127.0.0.1:{port} alice s3cret", AUTH_SMTP="",
                           SECURE_AUTH="1")
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.auth_results, [("PLAIN", True)])
        self.assertIn(("AUTH", True), server.secure)

    async def test_refused_starttls(self):
        """A refused STARTTLS leaves the session in clear text, and delivery goes on."""
        server, port = self.serve(ehlo="250-test\r\n250 STARTTLS", starttls_reply="454 no")
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.commands[:3], ["EHLO mx.example.com", "STARTTLS",
                                               "MAIL FROM:<bob@example.org>"])

    async def test_handshake_failure(self):
        """A TLS handshake that fails after the 220 defers with qmail-remote's
        "TLS connect failed" text."""
        server, port = self.serve(ehlo="250-test\r\n250 STARTTLS",
                                  starttls_reply="220 garbage")
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "deferral")
        self.assertTrue(result.report.startswith("TLS connect failed: "), result.report)
        self.assertTrue(result.report.endswith("; connected to 127.0.0.1."), result.report)

    async def test_notlshosts(self):
        """A recipient domain in control/notlshosts, or a certs/notlshosts/<host>
        file, gets no STARTTLS even when offered."""
        (self.home.control / "notlshosts").write_text("remote.test\n")
        server, port = self.serve(ehlo="250-test\r\n250 STARTTLS")
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "success", result.report)
        self.assertNotIn("STARTTLS", server.commands)
        (self.home.control / "notlshosts").unlink()
        (self.home.certs / "notlshosts").mkdir(parents=True)
        (self.home.certs / "notlshosts" / "127.0.0.1").write_text("")
        server, port = self.serve(ehlo="250-test\r\n250 STARTTLS")
        await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertNotIn("STARTTLS", server.commands)

    async def test_not_offered(self):
        """No STARTTLS keyword, no STARTTLS command."""
        server, port = self.serve()
        await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertNotIn("STARTTLS", server.commands)


class BindTests(Base):
    """The source address of the connection."""

    async def test_outgoingip(self):
        """control/outgoingip makes the peer see that source address."""
        (self.home.control / "outgoingip").write_text("127.0.0.2\n")
        server, port = self.serve()
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.peers, ["127.0.0.2"])

    async def test_outgoingip_env(self):
        """OUTGOINGIP overrides control/outgoingip."""
        (self.home.control / "outgoingip").write_text("127.0.0.2\n")
        server, port = self.serve()
        await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}", OUTGOINGIP="127.0.0.5"))
        self.assertEqual(server.peers, ["127.0.0.5"])

    async def test_domainbindings(self):
        """domainbindings binds by sender domain and HELOs as it."""
        (self.home.control / "domainbindings").write_text("example.org:127.0.0.6\n")
        server, port = self.serve()
        await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual(server.peers, ["127.0.0.6"])
        self.assertEqual(server.commands[0], "EHLO example.org")

    async def test_ipv4_binding_not_used_for_ipv6(self):
        """An IPv4 source address is not applied to an IPv6 peer."""
        server, port = self.serve(interface="::1")
        resolver = FakeResolver6(addrs6={"six.test": ["::1"]})
        result = await self.deliver(self.agent(resolver, SMTPROUTE=f":six.test:{port}",
                                               OUTGOINGIP="127.0.0.2"))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(server.peers, ["::1"])

    async def test_bind_ip_in_failure_text(self):
        """The no-connection deferral names the bound source address."""
        agent = self.agent(SMTPROUTE=":127.0.0.1:1", OUTGOINGIP="127.0.0.2")
        result = await self.deliver(agent)
        self.assertEqual(result.status, "deferral")
        self.assertIn("bind IP [127.0.0.2]", result.report)


class Tracked(RemoteDelivery):
    """Keeps a Deferred per connection that fires once it is closed."""

    async def _connect(self, *args, **kwargs):
        proto = await super()._connect(*args, **kwargs)
        if proto is not None:
            self.lost = getattr(self, "lost", []) + [proto.when_lost()]
        return proto


class OwnSmarthostTests(TLSAuthBase):
    """This project's own SMTP service as the smarthost: STARTTLS, then AUTH,
    which alone grants relaying to a remote domain."""

    async def relay(self, password):
        await self.start()
        base = self.mktemp()
        os.makedirs(base)
        home = make_home(base)
        queue, msgid = queue_message(home, BODY)
        agent = Tracked(home, control(home), reactor=reactor,
                        env={"SMTPROUTE": f":127.0.0.1:{self.portno} {USER} {password}",
                             "AUTH_SMTP": ""},
                        resolver=FakeResolver())
        result = await agent.deliver(queue, msgid, "bob@example.org", "carol@remote.example")
        await defer.gatherResults(agent.lost)
        return result

    async def test_starttls_and_auth_relay(self):
        """qmail-remote style delivery upgrades to TLS, authenticates with the
        route's credentials and the smarthost queues the relayed message."""
        result = await self.relay(PASSWORD)
        self.assertEqual(result.status, "success", result.report)
        self.assertIn("127.0.0.1 accepted message - Protocol SMTP.", result.report)
        [(envelope, message)] = self.queued()
        self.assertEqual(envelope.recipients, ["carol@remote.example"])
        self.assertIn(b"\nSubject: test\n\nbody\n", message)
        self.assertIn(b"ESMTPSA", message)

    async def test_wrong_password_defers(self):
        """A smarthost refusing the credentials defers the delivery."""
        result = await self.relay("wrong")
        self.assertEqual(result.status, "deferral", result.report)
        self.assertIn("but authentication was rejected", result.report)
        self.assertEqual(self.queued(), [])
