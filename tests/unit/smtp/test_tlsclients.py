"""tlsclients (qmail-smtpd ``tls_verify()``): client CAs, CRLs, the
certificate's email address and what a session gains from it.

The small PKI helpers here are also used by the loopback tests in
``tests/integration/smtp/test_tlsclients.py``."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.config.certs import self_signed_pem
from indimail.smtp import reply
from indimail.smtp.session import Session
from indimail.smtp.tls import ServerTLS, load_server_tls
from indimail.smtp.tlsclients import (NO_EMAIL, NOT_LISTED, ClientCA, ClientCheck, StartTLS,
                                      apply_check, cert_dir, certificate_email, check_client,
                                      received_note, relay_refusal)

NOW = datetime.datetime.now(datetime.timezone.utc)


# -- a tiny PKI ------------------------------------------------------------------------
class Issued:
    """A key and its certificate, with PEM forms."""

    def __init__(self, key, cert: x509.Certificate):
        self.key, self.cert = key, cert

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory, name: str) -> tuple[str, str]:
        """``name.crt`` and ``name.key`` in *directory*; their paths."""
        crt, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
        Path(crt).write_bytes(self.cert_pem)
        Path(key).write_bytes(self.key_pem)
        return crt, key


def _name(cn: str, email: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attrs)


def make_ca(cn: str = "Test Client CA") -> Issued:
    """A self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(cn)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


def make_client(ca: Issued, cn: str, email: str | None = None) -> Issued:
    """A client certificate signed by *ca*, *email* in its subject."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn, email))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Issued(key, cert)


def make_crl(ca: Issued, *revoked: Issued) -> bytes:
    """*ca*'s CRL revoking *revoked*, as PEM."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(NOW - datetime.timedelta(days=1))
               .next_update(NOW + datetime.timedelta(days=30)))
    for issued in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(issued.cert.serial_number)
            .revocation_date(NOW - datetime.timedelta(hours=1)).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class FakeConnection:
    """What check_client reads of a pyOpenSSL Connection."""

    def __init__(self, cert: x509.Certificate | None, chain=()):
        self.cert = crypto.X509.from_cryptography(cert) if cert is not None else None
        self.chain = [crypto.X509.from_cryptography(c) for c in chain]

    def get_peer_certificate(self):
        return self.cert

    def get_peer_cert_chain(self):
        return self.chain if self.cert is not None else None


# -- tests ---------------------------------------------------------------------------------
class ClientCATests(SynchronousTestCase):

    def setUp(self):
        self.ca = make_ca()
        self.client = make_client(self.ca, "client", "relay@client.example")

    def test_verifies_certificates_of_its_cas_only(self):
        """A certificate signed by a CA in clientca.pem verifies; one of another CA does not."""
        cas = ClientCA(Path("clientca.pem"), self.ca.cert_pem)
        self.assertIsNone(cas.verify(crypto.X509.from_cryptography(self.client.cert), []))
        stranger = make_client(make_ca("Other CA"), "client", "relay@client.example")
        error = cas.verify(crypto.X509.from_cryptography(stranger.cert), [])
        self.assertIn("unable to get local issuer certificate", error)

    def test_crl_revokes(self):
        """With clientcrl.pem a revoked certificate fails ('certificate revoked'), others pass."""
        other = make_client(self.ca, "other", "other@client.example")
        cas = ClientCA(Path("clientca.pem"), self.ca.cert_pem, make_crl(self.ca, self.client))
        self.assertEqual(cas.crls, 1)
        self.assertEqual(cas.verify(crypto.X509.from_cryptography(self.client.cert), []),
                         "certificate revoked")
        self.assertIsNone(cas.verify(crypto.X509.from_cryptography(other.cert), []))

    def test_load_from_certdir_with_names_from_env(self):
        """CERTDIR moves the directory, CLIENTCA and CLIENTCRL rename the files; no CA file: None."""
        home_certs, other = Path(self.mktemp()), Path(self.mktemp())
        home_certs.mkdir()
        other.mkdir()
        self.assertIsNone(ClientCA.load(home_certs, {}))
        (home_certs / "clientca.pem").write_bytes(self.ca.cert_pem)
        self.assertEqual(ClientCA.load(home_certs, {}).path, home_certs / "clientca.pem")
        (other / "cas.pem").write_bytes(self.ca.cert_pem)
        (other / "crls.pem").write_bytes(make_crl(self.ca, self.client))
        env = {"CERTDIR": str(other), "CLIENTCA": "cas.pem", "CLIENTCRL": "crls.pem"}
        loaded = ClientCA.load(cert_dir(home_certs, env), env)
        self.assertEqual((loaded.path, loaded.crls), (other / "cas.pem", 1))

    def test_broken_ca_file_is_ignored(self):
        """A clientca.pem holding no certificate asks for nothing (None, logged)."""
        certs = Path(self.mktemp())
        certs.mkdir()
        (certs / "clientca.pem").write_text("garbage\n")
        self.assertIsNone(ClientCA.load(certs, {}))
        self.flushLoggedErrors()


class CheckClientTests(SynchronousTestCase):

    def setUp(self):
        self.ca = make_ca()
        self.cas = ClientCA(Path("clientca.pem"), self.ca.cert_pem)

    def check(self, cert, clients=("relay@client.example",)):
        return check_client(FakeConnection(cert), self.cas, list(clients))

    def test_listed_email_relays(self):
        """The subject emailAddress listed in tlsclients (any case) grants relaying."""
        cert = make_client(self.ca, "client", "Relay@Client.Example").cert
        self.assertEqual(self.check(cert), ClientCheck(True, "Relay@Client.Example"))

    def test_unlisted_email(self):
        """A verified certificate whose email is not listed: upstream's reason."""
        cert = make_client(self.ca, "client", "someone@client.example").cert
        self.assertEqual(self.check(cert),
                         ClientCheck(False, "someone@client.example", NOT_LISTED))

    def test_common_name_is_not_an_email(self):
        """Only the subject emailAddress counts, not the CN (as upstream)."""
        cert = make_client(self.ca, "relay@client.example").cert
        self.assertEqual(self.check(cert), ClientCheck(False, error=NO_EMAIL))

    def test_no_certificate(self):
        """No certificate: nothing gained and no reason (upstream breaks out silently)."""
        self.assertEqual(self.check(None), ClientCheck(False))

    def test_unverified_certificate(self):
        """A certificate of another CA does not relay even when its email is listed."""
        cert = make_client(make_ca("Other"), "client", "relay@client.example").cert
        result = self.check(cert)
        self.assertFalse(result.relay)
        self.assertIn("unable to get local issuer certificate", result.error)

    def test_certificate_email(self):
        """certificate_email reads the first subject emailAddress."""
        self.assertEqual(certificate_email(make_client(self.ca, "c", "a@b.example").cert),
                         "a@b.example")
        self.assertIsNone(certificate_email(make_client(self.ca, "c").cert))


class SessionEffectTests(SynchronousTestCase):

    def session(self, env=None, tls=True):
        return Session(env=Environment(env or {}), remote_ip="192.0.2.7", tls=tls)

    def test_relay_sets_relayclient_and_authenticated(self):
        """A listed certificate gives RELAYCLIENT="" and AUTHENTICATED=1, and a Received note."""
        s = self.session()
        apply_check(s, ClientCheck(True, "relay@client.example"))
        self.assertEqual((s.env.get("RELAYCLIENT"), s.env.get("AUTHENTICATED")), ("", "1"))
        self.assertEqual(received_note(s), "\n  (cert relay@client.example)")

    def test_failure_keeps_reason(self):
        """A failed check changes no variable and keeps its reason for the refusal."""
        s = self.session()
        apply_check(s, ClientCheck(False, "x@y", NOT_LISTED))
        self.assertNotIn("RELAYCLIENT", s.env)
        self.assertEqual(received_note(s), "")
        self.assertEqual(relay_refusal(s),
                         "sorry, that domain isn't allowed to be relayed thru this MTA without "
                         "authentication; no valid cert for gateway: email address not in my "
                         "list of tlsclients  #5.7.1")

    def test_existing_relayclient_untouched(self):
        """A session that is a relay client already gains nothing (upstream returns early)."""
        s = self.session({"RELAYCLIENT": "+x"})
        apply_check(s, ClientCheck(True, "relay@client.example"))
        self.assertEqual(s.env.get("RELAYCLIENT"), "+x")
        self.assertNotIn("AUTHENTICATED", s.env)

    def test_refusal_text(self):
        """Without TLS the 553 text is upstream's plain one; over TLS it says no valid cert."""
        self.assertEqual(relay_refusal(self.session(tls=False)), reply.NO_RELAY)
        self.assertEqual(relay_refusal(self.session()),
                         "sorry, that domain isn't allowed to be relayed thru this MTA without "
                         "authentication; no valid cert for gateway  #5.7.1")


class ContextTests(SynchronousTestCase):

    def setUp(self):
        self.pem = self_signed_pem("mx.example.com", NOW)
        self.ca = make_ca()
        self.certs = Path(self.mktemp())
        self.certs.mkdir()
        (self.certs / "servercert.pem").write_bytes(self.pem)

    def test_client_ca_requests_certificate(self):
        """With clientca.pem the STARTTLS context asks for a client certificate; without, not."""
        plain = load_server_tls(self.certs, {})
        self.assertIsNone(plain.client_ca)
        self.assertEqual(plain.options().getContext().get_verify_mode(), SSL.VERIFY_NONE)
        (self.certs / "clientca.pem").write_bytes(self.ca.cert_pem)
        asking = load_server_tls(self.certs, {})
        mode = asking.options("HIGH").getContext().get_verify_mode()
        self.assertTrue(mode & SSL.VERIFY_PEER)
        self.assertFalse(mode & SSL.VERIFY_FAIL_IF_NO_PEER_CERT)

    def test_servercert_from_certdir_and_name(self):
        """CERTDIR and SERVERCERT choose the server certificate file."""
        other = Path(self.mktemp())
        other.mkdir()
        (other / "mx.pem").write_bytes(self.pem)
        self.assertIsNone(load_server_tls(self.certs, {"CERTDIR": str(other)}))
        self.assertIsInstance(load_server_tls(self.certs, {"CERTDIR": str(other),
                                                           "SERVERCERT": "mx.pem"}), ServerTLS)

    def test_client_check_needs_tlsclients(self):
        """No check without control tlsclients or without client CAs."""
        control_dir = Path(self.mktemp())
        control_dir.mkdir()
        control = ControlFiles(control_dir)
        (self.certs / "clientca.pem").write_bytes(self.ca.cert_pem)
        cert = make_client(self.ca, "c", "relay@client.example").cert
        start = StartTLS(load_server_tls(self.certs, {}), control)
        self.assertIsNone(start.client_check(FakeConnection(cert)))
        (control_dir / "tlsclients").write_text("# relays\nrelay@client.example\n")
        control.refresh()
        self.assertEqual(start.client_check(FakeConnection(cert)),
                         ClientCheck(True, "relay@client.example"))
        (self.certs / "clientca.pem").unlink()
        self.assertIsNone(StartTLS(load_server_tls(self.certs, {}), control)
                          .client_check(FakeConnection(cert)))
