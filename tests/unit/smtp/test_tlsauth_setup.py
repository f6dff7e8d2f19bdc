"""How the service finds its AUTH checkers and its STARTTLS certificate."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from twisted.cred import error
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from indimail.auth.checkers import PasswordFileChecker
from indimail.auth.checkpassword import CheckPasswordChecker
from indimail.auth.credentials import IUsernamePassword, UsernamePassword
from indimail.auth.realm import CAP_CRAM, CAP_PLAIN, AvatarId
from indimail.config.certs import self_signed_pem
from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.config.home import Home
from indimail.smtp.authsetup import FirstOf, load_auth
from indimail.smtp.service import SMTPFactory
from indimail.smtp.tls import ServerTLS, describe


def home(testcase) -> Home:
    path = testcase.mktemp()
    os.makedirs(os.path.join(path, "users"))
    return Home(Path(path))


class Fixed:
    """A checker answering one user name."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, name: bytes):
        self.name = name

    def requestAvatarId(self, credentials):
        if credentials.username == self.name:
            return defer.succeed(AvatarId.make(self.name))
        return defer.fail(error.UnauthorizedLogin("no"))


class LoadAuthTests(SynchronousTestCase):

    def test_nothing_configured(self):
        """No users/passwd and no AUTHMODULES: no AUTH at all."""
        self.assertIsNone(load_auth(home(self), Environment(), Clock()))

    def test_password_file(self):
        """users/passwd gives a PasswordFileChecker that is also the SCRAM source."""
        h = home(self)
        (h.users / "passwd").write_text("u:{CRAM}x\n")
        setup = load_auth(h, Environment(), Clock())
        [checker] = setup.checkers
        self.assertIsInstance(checker, PasswordFileChecker)
        self.assertIs(setup.scram_source, checker)

    def test_authmodules(self):
        """AUTHMODULES becomes qmail-smtpd's checkprogram argv ending in /bin/false."""
        env = Environment({"AUTHMODULES": "/usr/sbin/sys-checkpwd /usr/sbin/vchkpass"})
        setup = load_auth(home(self), env, Clock())
        [checker] = setup.checkers
        self.assertIsInstance(checker, CheckPasswordChecker)
        self.assertEqual(checker.argv, ["/usr/sbin/sys-checkpwd", "/usr/sbin/vchkpass",
                                        "/bin/false"])
        self.assertEqual(setup.capabilities(), {CAP_PLAIN, CAP_CRAM})


class FirstOfTests(SynchronousTestCase):

    def test_first_success_wins(self):
        """A login refused by the first checker is tried against the next."""
        chain = FirstOf([Fixed(b"a"), Fixed(b"b")])
        self.assertEqual(self.successResultOf(
            chain.requestAvatarId(UsernamePassword(b"b", b"x"))), b"b")
        self.failureResultOf(chain.requestAvatarId(UsernamePassword(b"c", b"x")),
                             error.UnauthorizedLogin)


class ServerTLSTests(SynchronousTestCase):

    def test_missing_or_broken_certificate(self):
        """No file, or a file that is no certificate: no STARTTLS (None)."""
        path = self.mktemp()
        self.assertIsNone(ServerTLS.from_file(path))
        with open(path, "w") as f:
            f.write("not a pem\n")
        self.assertIsNone(ServerTLS.from_file(path))

    def test_options_cached(self):
        """One context factory per (ciphers, method)."""
        pem = self_signed_pem("mx.example.com", datetime.datetime.now(datetime.timezone.utc),
                              key_size=2048)
        tls = ServerTLS(pem)
        self.assertIs(tls.options(), tls.options())
        self.assertIsNot(tls.options("HIGH"), tls.options())
        self.assertIs(tls.options("HIGH", "TLSv1_2"), tls.options("HIGH", "TLSv1_2"))

    def test_describe_without_tls(self):
        """A transport without a TLS connection has no description."""
        self.assertIsNone(describe(object()))


class RecordingTLS:
    def options(self, ciphers=None, method=None):
        return (ciphers, method)


class FactoryTLSOptionsTests(SynchronousTestCase):

    def factory(self, files: dict[str, str]) -> SMTPFactory:
        path = self.mktemp()
        os.makedirs(path)
        for name, text in files.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(text)
        return SMTPFactory(control=ControlFiles(path), sink=None, env=dict, rules=None,
                           reactor=Clock())

    def test_control_ciphers_and_method(self):
        """control tlsserverciphers (lines joined by ':') and tlsservermethod pick the context."""
        f = self.factory({"tlsserverciphers": "HIGH\n!aNULL\n", "tlsservermethod": "TLSv1_2\n"})
        options = f.tls_options_for(RecordingTLS())
        self.assertEqual(options(Environment()), ("HIGH:!aNULL", "TLSv1_2"))

    def test_env_cipher_list_wins(self):
        """TLS_CIPHER_LIST in the session env wins over control tlsserverciphers."""
        f = self.factory({"tlsserverciphers": "HIGH\n"})
        options = f.tls_options_for(RecordingTLS())
        self.assertEqual(options(Environment({"TLS_CIPHER_LIST": "MEDIUM"})), ("MEDIUM", None))

    def test_no_certificate(self):
        """Without a certificate the protocol gets no STARTTLS at all."""
        self.assertIsNone(self.factory({}).tls_options_for(None))
