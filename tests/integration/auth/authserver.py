"""A minimal SMTP AUTH-only server for interop tests with swaks and gsasl.

Not the product's SMTP protocol (that wires the mechanisms itself): just
enough EHLO/STARTTLS/AUTH/QUIT to let real clients drive each mechanism
over a real socket, including channel binding after STARTTLS.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import protocol, ssl
from twisted.protocols.basic import LineReceiver

from indimail.auth.advertise import advertised_mechanisms
from indimail.auth.channelbinding import transport_binding
from indimail.auth.mechanisms import AuthContext, make_mechanism
from indimail.auth.realm import capabilities
from indimail.auth.sasl import (Challenge, MalformedResponse, Success, decode_response,
                                encode_challenge)
from indimail.config.environment import Environment


def tls_options(max_version=None):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    opts = ssl.PrivateCertificate.loadPEM(pem).options()
    if max_version is not None:
        opts.getContext().set_max_proto_version(max_version)
    return opts


class AuthOnlySMTP(LineReceiver):
    delimiter = b"\r\n"

    def connectionMade(self):
        self.mech = None
        self.tls = False
        self.sendLine(b"220 mx.example.com ESMTP")

    def mechanisms(self):
        return advertised_mechanisms(self.factory.env, capabilities(self.factory.portal),
                                     tls=self.tls)

    def lineReceived(self, line):
        if self.mech is not None:
            try:
                data = decode_response(line)
            except MalformedResponse as e:
                self.mech = None
                return self.sendLine(e.failure.reply())
            self.mech.respond(data).addCallback(self.answer)
            return
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb in (b"EHLO", b"HELO"):
            lines = [b"mx.example.com", b"AUTH " + " ".join(self.mechanisms()).encode()]
            if self.factory.tls_options and not self.tls:
                lines.append(b"STARTTLS")
            lines.append(b"HELP")
            for i, text in enumerate(lines):
                self.sendLine((b"250 " if i == len(lines) - 1 else b"250-") + text)
        elif verb == b"STARTTLS":
            self.sendLine(b"220 ready to start TLS")
            self.transport.startTLS(self.factory.tls_options)
            self.tls = True
        elif verb == b"AUTH":
            name, _, initial = arg.partition(b" ")
            name = name.decode("ascii", "replace").upper()
            if name not in self.mechanisms():
                return self.sendLine(b"504 auth type unimplemented (#5.5.1)")
            ctx = AuthContext(self.factory.portal, "mx.example.com",
                              scram_source=self.factory.scram_source,
                              channel_binding=transport_binding(self.transport),
                              plus_advertised=self.tls)
            self.mech = make_mechanism(name, ctx)
            try:
                data = decode_response(initial) if initial else None
            except MalformedResponse as e:
                self.mech = None
                return self.sendLine(e.failure.reply())
            self.mech.start(data).addCallback(self.answer)
        elif verb == b"QUIT":
            self.sendLine(b"221 bye")
            self.transport.loseConnection()
        else:
            self.sendLine(b"250 ok")

    def answer(self, result):
        if isinstance(result, Challenge):
            self.sendLine(b"334 " + encode_challenge(result.data))
            return
        self.mech = None
        if isinstance(result, Success):
            self.factory.logins.append((result.mechanism, result.avatar.username))
            binding = transport_binding(self.transport)()
            self.factory.bindings.append(binding[0] if binding else None)
            self.sendLine(b"235 ok, go ahead (#2.0.0)")
        else:
            self.sendLine(result.reply())


class AuthOnlyFactory(protocol.ServerFactory):
    protocol = AuthOnlySMTP

    def __init__(self, portal, scram_source=None, env=None, tls_options=None):
        self.portal = portal
        self.scram_source = scram_source
        self.env = env if env is not None else Environment()
        self.tls_options = tls_options
        self.logins = []
        self.bindings = []


TLS1_2 = SSL.TLS1_2_VERSION
