"""tlsdestinations: verified STARTTLS to listed destinations, against a real
TLS SMTP receiver on loopback whose certificate comes from a test CA made
here; opportunistic STARTTLS stays for everyone else."""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor, ssl

from indimail.delivery.remote import RemoteDelivery
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedServerCase
from .test_remote_more import AuthFactory, AuthSMTP

BODY = b"Subject: test\n\nbody\n"
MX = "mx.tls.test"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str):
    """A self-signed CA: (key, certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca, common: str, dns_names: list[str]) -> bytes:
    """A server certificate signed by *ca*: key and certificate as PEM."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(common))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30)))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + cert.public_bytes(serialization.Encoding.PEM))


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class CertSMTP(AuthSMTP):
    """AuthSMTP whose STARTTLS presents the factory's certificate."""

    def lineReceived(self, line):
        if line.upper() == b"STARTTLS" and self.auth is None:
            self.factory.commands.append("STARTTLS")
            self.factory.secure.append(("STARTTLS", self.tls))
            self._send("220 go ahead")
            self.transport.startTLS(self.factory.tls_options)
            self.tls = True
            return
        super().lineReceived(line)


class CertFactory(AuthFactory):
    protocol = CertSMTP
    tls_options = None


class CABase(ScriptedServerCase):
    """A home with a test CA in ``ca.pem``."""

    factory_class = CertFactory
    BODY = BODY

    def setUp(self):
        super().setUp()
        self.ca = make_ca("Test CA")
        self.cafile = self.home.path / "ca.pem"
        self.cafile.write_bytes(pem(self.ca[1]))


class TLSDestinationTests(CABase):
    STARTTLS = "250-test\r\n250-STARTTLS\r\n250 SIZE 100000"

    def serve_cert(self, server_pem: bytes, **replies):
        server, port = self.serve(**replies)
        server.tls_options = ssl.PrivateCertificate.loadPEM(server_pem).options()
        return server, port

    def deliver(self, port, **env):
        env.setdefault("SMTPROUTE", f":{MX}:{port}")
        agent = RemoteDelivery(self.home, control(self.home), env=env,
                               resolver=FakeResolver(addrs={MX: ["127.0.0.1"]}))
        return agent.deliver(self.queue, self.msgid, "bob@example.org", "carol@remote.test")

    async def test_verified_destination(self):
        """A listed destination whose certificate verifies against the CA
        file and names the host: the whole transaction runs over TLS."""
        server, port = self.serve_cert(issue(self.ca, MX, [MX]), ehlo=self.STARTTLS)
        (self.home.control / "tlsdestinations").write_text(f"{MX}:{self.cafile}\n")
        result = await self.deliver(port)
        self.assertEqual(result.status, "success", result.report)
        self.assertIn(("MAIL", True), server.secure)
        self.assertEqual(len(server.messages), 1)

    async def test_wildcard_certificate(self):
        """``*.tls.test`` in the certificate matches mx.tls.test; the
        destination is listed by its parent domain ``.tls.test``."""
        server, port = self.serve_cert(issue(self.ca, "x", ["*.tls.test"]), ehlo=self.STARTTLS)
        (self.home.control / "tlsdestinations").write_text(f".tls.test:{self.cafile}\n")
        result = await self.deliver(port)
        self.assertEqual(result.status, "success", result.report)

    async def test_untrusted_ca_defers(self):
        """A certificate from another CA: deferral with upstream's
        "TLS unable to verify server with" text, and no mail is sent."""
        other = make_ca("Other CA")
        server, port = self.serve_cert(issue(other, MX, [MX]), ehlo=self.STARTTLS)
        (self.home.control / "tlsdestinations").write_text(f"{MX}:{self.cafile}\n")
        result = await self.deliver(port)
        self.assertEqual((result.status, result.report), (
            "deferral", f"TLS unable to verify server with {self.cafile}: unable to get "
                        "local issuer certificate; connected to 127.0.0.1."))
        self.assertEqual(server.messages, [])
        self.assertNotIn("MAIL", [verb for verb, _tls in server.secure])

    async def test_wrong_name_defers(self):
        """A trusted certificate for another name defers, naming both."""
        server, port = self.serve_cert(issue(self.ca, "other.test", ["other.test"]),
                                       ehlo=self.STARTTLS)
        (self.home.control / "tlsdestinations").write_text(f"remote.test:{self.cafile}\n")
        result = await self.deliver(port)
        self.assertEqual((result.status, result.report), (
            "deferral", f"TLS unable to verify server {MX}: received certificate for "
                        "other.test; connected to 127.0.0.1."))
        self.assertEqual(server.messages, [])

    async def test_no_starttls_defers(self):
        """A listed destination that does not offer STARTTLS: deferral, no MAIL."""
        server, port = self.serve_cert(issue(self.ca, MX, [MX]))
        (self.home.control / "tlsdestinations").write_text(f"*:{self.cafile}\n")
        result = await self.deliver(port)
        self.assertEqual((result.status, result.report), (
            "deferral", f"No TLS achieved while {self.cafile} exists; connecting to "
                        "127.0.0.1."))
        self.assertNotIn("MAIL", [verb for verb, _tls in server.secure])

    async def test_unlisted_stays_opportunistic(self):
        """A destination not listed takes any certificate (opportunistic)."""
        other = make_ca("Other CA")
        server, port = self.serve_cert(issue(other, "whatever", []), ehlo=self.STARTTLS)
        (self.home.control / "tlsdestinations").write_text(f"elsewhere.test:{self.cafile}\n")
        result = await self.deliver(port)
        self.assertEqual(result.status, "success", result.report)
        self.assertIn(("MAIL", True), server.secure)

    async def test_bang_turns_tls_off(self):
        """``!destination`` means no STARTTLS at all for it."""
        server, port = self.serve_cert(issue(self.ca, MX, [MX]), ehlo=self.STARTTLS)
        (self.home.control / "tlsdestinations").write_text(f"!remote.test\n*:{self.cafile}\n")
        result = await self.deliver(port)
        self.assertEqual(result.status, "success", result.report)
        self.assertNotIn("STARTTLS", server.commands)

    async def test_tlshosts_file(self):
        """Upstream's ``certs/tlshosts/<host>.pem`` also demands verification."""
        other = make_ca("Other CA")
        server, port = self.serve_cert(issue(other, MX, [MX]), ehlo=self.STARTTLS)
        (self.home.certs / "tlshosts").mkdir(parents=True)
        (self.home.certs / "tlshosts" / f"{MX}.pem").write_bytes(pem(self.ca[1]))
        result = await self.deliver(port)
        self.assertEqual(result.status, "deferral")
        self.assertTrue(result.report.startswith("TLS unable to verify server with "),
                        result.report)


class SmtpsDestinationTests(CABase):
    """Port 465 routes speak TLS from the first byte; a listed destination
    is verified before the greeting is read."""

    def serve_smtps(self, server_pem: bytes):
        server = CertFactory()
        options = ssl.PrivateCertificate.loadPEM(server_pem).options()
        listening = reactor.listenSSL(0, server, options, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(server.all_closed()))
        return server, listening.getHost().port

    def smtps_agent(self, real_port):
        class To465(RemoteDelivery):
            async def _connect_with(self, address, _port, *args):
                return await super()._connect_with(address, real_port, *args)

        return To465(self.home, control(self.home), env={"SMTPROUTE": f":{MX}:465"},
                     resolver=FakeResolver(addrs={MX: ["127.0.0.1"]}))

    async def test_smtps_verified(self):
        """A verifying SMTPS connection delivers (report says SMTPS)."""
        server, port = self.serve_smtps(issue(self.ca, MX, [MX]))
        (self.home.control / "tlsdestinations").write_text(f"{MX}:{self.cafile}\n")
        result = await self.smtps_agent(port).deliver(self.queue, self.msgid,
                                                      "bob@example.org", "carol@remote.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertIn("Protocol SMTPS", result.report)

    async def test_smtps_untrusted(self):
        """SMTPS to a listed destination with an untrusted certificate defers
        before any SMTP command is sent."""
        server, port = self.serve_smtps(issue(make_ca("Other"), MX, [MX]))
        (self.home.control / "tlsdestinations").write_text(f"{MX}:{self.cafile}\n")
        result = await self.smtps_agent(port).deliver(self.queue, self.msgid,
                                                      "bob@example.org", "carol@remote.test")
        self.assertEqual(result.status, "deferral")
        self.assertTrue(result.report.startswith(f"TLS unable to verify server with "
                                                 f"{self.cafile}: "), result.report)
        self.assertEqual(server.commands, [])
