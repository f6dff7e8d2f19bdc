"""The password-file checker: real file, reactor thread pool, reload on change."""

import hmac
import os

from twisted.cred import error
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from indimail.auth import schemes
from indimail.auth.advertise import advertised_mechanisms
from indimail.auth.checkers import PasswordFileChecker, parse_password_file
from indimail.auth.credentials import CramCredentials, UsernamePassword
from indimail.auth.mechanisms import AuthContext, make_mechanism
from indimail.auth.realm import CAP_PLAIN, capabilities, make_portal
from indimail.auth.sasl import Challenge, Success
from indimail.config.environment import Environment

from tests.unit.auth.test_schemes import SEED_SCRAM
from tests.unit.auth.test_scram import ScramClient


class PasswordFileTests(TestCase):
    def setUp(self):
        self.path = self.mktemp()
        self.write(b"# accounts\n\nmanny@example.com:" + SEED_SCRAM.encode() + b"\n"
                   + b"bob:" + schemes.crypt_password(b"builder", "$5$bobsalt").encode() + b"\n")
        self.checker = PasswordFileChecker(self.path, reactor)

    def write(self, data):
        with open(self.path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(self.path + ".tmp", self.path)

    async def test_plain_crypt_and_scram_entries(self):
        """PLAIN passwords verify against a $5$ entry and the crypt part of a SCRAM entry."""
        self.assertEqual(await self.checker.requestAvatarId(UsernamePassword(b"bob", b"builder")), b"bob")
        await self.checker.requestAvatarId(UsernamePassword(b"manny@example.com", b"supersecret"))
        with self.assertRaises(error.UnauthorizedLogin):
            await self.checker.requestAvatarId(UsernamePassword(b"bob", b"builders"))
        with self.assertRaises(error.UnauthorizedLogin):
            await self.checker.requestAvatarId(UsernamePassword(b"nobody", b"x"))

    async def test_capabilities_follow_the_file(self):
        """Without clear-text entries only PLAIN/LOGIN and SCRAM-SHA-256 are offered; a {CRAM} entry adds CRAM."""
        await self.checker.load()
        portal = make_portal([self.checker])
        self.assertEqual(advertised_mechanisms(Environment(), capabilities(portal)),
                         ["LOGIN", "PLAIN", "SCRAM-SHA-256"])
        self.write(b"legacy:{CRAM}pw\n")
        await self.checker.load()
        self.assertIn("CRAM-MD5", advertised_mechanisms(Environment(), capabilities(portal)))
        self.assertIn(CAP_PLAIN, capabilities(portal))

    async def test_reload_on_change(self):
        """A rewritten file is picked up at the next login."""
        await self.checker.requestAvatarId(UsernamePassword(b"bob", b"builder"))
        self.write(b"bob:{CRAM}new\n")
        creds = CramCredentials(b"bob", b"<1@x>", b"", "CRAM-MD5", "md5")
        creds.response = hmac.new(b"new", b"<1@x>", "md5").hexdigest().encode()
        self.assertEqual(await self.checker.requestAvatarId(creds), b"bob")
        with self.assertRaises(error.UnauthorizedLogin):
            await self.checker.requestAvatarId(UsernamePassword(b"bob", b"builder"))

    async def test_scram_through_portal(self):
        """SCRAM-SHA-256 against the file: secrets from the checker, proof through the portal."""
        ctx = AuthContext(make_portal([self.checker]), "mx", scram_source=self.checker)
        mech = make_mechanism("SCRAM-SHA-256", ctx)
        client = ScramClient("sha256", b"manny@example.com", b"supersecret", b"nonce1")
        first = await mech.start(client.first())
        final = await mech.respond(client.final(first.data))
        self.assertEqual(final, Challenge(client.expected_final))
        self.assertIsInstance(await mech.respond(b""), Success)

    async def test_missing_file(self):
        """A missing file authenticates nobody and offers nothing."""
        checker = PasswordFileChecker(self.path + ".absent", reactor)
        await checker.load()
        self.assertEqual(checker.capabilities(), set())
        with self.assertRaises(error.UnauthorizedLogin):
            await checker.requestAvatarId(UsernamePassword(b"bob", b"builder"))

    def test_parse_skips_bad_lines(self):
        """Lines without a colon or with an unknown scheme are skipped, the rest kept."""
        entries = parse_password_file(b"nocolon\nx:{BAD}y\nok:{CRAM}pw\n:{CRAM}noname\n")
        self.assertEqual(list(entries), [b"ok"])
