"""tls-unique (TLS 1.2) and tls-exporter (TLS 1.3) binding data, both ends of a real handshake in memory."""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from indimail.auth.channelbinding import binding_type, channel_binding, resumed, transport_binding


def _cert():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert


def contexts(version):
    key, cert = _cert()
    sctx = SSL.Context(SSL.TLS_METHOD)
    sctx.use_privatekey(key)
    sctx.use_certificate(cert)
    sctx.set_session_id(b"indimail-test")
    sctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    cctx = SSL.Context(SSL.TLS_METHOD)
    cctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
    for ctx in (sctx, cctx):
        ctx.set_min_proto_version(version)
        ctx.set_max_proto_version(version)
    return sctx, cctx


def handshake(version, ctxs=None, session=None):
    """A client and server Connection pair, handshaken over memory BIOs."""
    sctx, cctx = ctxs or contexts(version)
    server, client = SSL.Connection(sctx, None), SSL.Connection(cctx, None)
    server.set_accept_state()
    client.set_connect_state()
    if session is not None:
        client.set_session(session)
    for _ in range(20):
        for conn in (client, server):
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
        for src, dst in ((client, server), (server, client)):
            try:
                dst.bio_write(src.bio_read(65536))
            except SSL.WantReadError:
                pass
    return server, client


class ChannelBindingTests(SynchronousTestCase):
    def test_tls12_unique(self):
        """On TLS 1.2 the server's tls-unique is the client's Finished message."""
        server, client = handshake(SSL.TLS1_2_VERSION)
        self.assertFalse(resumed(server))
        kind, data = channel_binding(server)
        self.assertEqual(kind, "tls-unique")
        self.assertEqual(data, client.get_finished())
        self.assertEqual(channel_binding(client, server=False), (kind, data))

    def test_tls12_unique_resumed(self):
        """On a resumed TLS 1.2 session tls-unique is the server's Finished, on both ends."""
        ctxs = contexts(SSL.TLS1_2_VERSION)
        _, first = handshake(SSL.TLS1_2_VERSION, ctxs)
        server, client = handshake(SSL.TLS1_2_VERSION, ctxs, session=first.get_session())
        self.assertTrue(resumed(server))
        kind, data = channel_binding(server)
        self.assertEqual(data, server.get_finished())
        self.assertEqual(channel_binding(client, server=False), (kind, data))

    def test_tls13_exporter(self):
        """On TLS 1.3 both ends derive the same 32-byte EXPORTER-Channel-Binding value."""
        server, client = handshake(SSL.TLS1_3_VERSION)
        self.assertEqual(binding_type(server), "tls-exporter")
        kind, data = channel_binding(server)
        self.assertEqual(len(data), 32)
        self.assertEqual(channel_binding(client, server=False), (kind, data))

    def test_transport_without_tls(self):
        """A plain TCP transport (no pyOpenSSL handle) has no binding."""
        class Plain:
            def getHandle(self):
                return object()
        self.assertIsNone(transport_binding(Plain())())
        self.assertIsNone(channel_binding(None))

    def test_transport_with_tls(self):
        """A TLS transport's getHandle() connection gives its binding."""
        server, _ = handshake(SSL.TLS1_3_VERSION)

        class Tls:
            def getHandle(self):
                return server
        self.assertEqual(transport_binding(Tls())(), channel_binding(server))
