"""Which mechanisms EHLO offers, from IndiMail's DISABLE_* variables and the checkers."""

from twisted.trial.unittest import SynchronousTestCase

from indimail.auth.advertise import advertised_mechanisms
from indimail.auth.checkpassword import CheckPasswordChecker
from indimail.auth.realm import (CAP_CRAM, CAP_PLAIN, CAP_SCRAM_SHA1, CAP_SCRAM_SHA256,
                                 capabilities, make_portal)
from indimail.config.environment import Environment

from .helpers import MemoryChecker

ALL = {CAP_PLAIN, CAP_CRAM, CAP_SCRAM_SHA1, CAP_SCRAM_SHA256}
CRAMS = ["CRAM-MD5", "CRAM-SHA1", "CRAM-SHA224", "CRAM-SHA256", "CRAM-SHA384",
         "CRAM-SHA512", "CRAM-RIPEMD"]


class AdvertiseTests(SynchronousTestCase):
    def test_everything_in_qmail_smtpd_order(self):
        """With TLS and every capability, all 14 mechanisms are offered in qmail-smtpd's order."""
        self.assertEqual(advertised_mechanisms(Environment(), ALL, tls=True),
                         ["LOGIN", "PLAIN", *CRAMS, "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256",
                          "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])

    def test_plus_needs_tls(self):
        """Without TLS the -PLUS variants are not offered."""
        mechs = advertised_mechanisms(Environment(), ALL, tls=False)
        self.assertNotIn("SCRAM-SHA-256-PLUS", mechs)
        self.assertIn("SCRAM-SHA-256", mechs)

    def test_seed_disables_cram_and_digest(self):
        """The seed's DISABLE_AUTH_CRAM_<hash> and DISABLE_DIGEST_MD5 files remove those methods."""
        env = Environment({f"DISABLE_AUTH_CRAM_{h}": "1" for h in
                           ("MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512")}
                          | {"DISABLE_DIGEST_MD5": "1"})
        self.assertEqual(advertised_mechanisms(env, ALL),
                         ["LOGIN", "PLAIN", "CRAM-RIPEMD", "SCRAM-SHA-1", "SCRAM-SHA-256"])

    def test_upstream_spellings(self):
        """indimail-mta's own names (DISABLE_CRAM_*, DISABLE_SCRAM_*, DISABLE_AUTH_LOGIN/PLAIN) work, even when empty."""
        env = Environment({"DISABLE_CRAM_RIPEMD": "", "DISABLE_SCRAM_SHA1": "",
                           "DISABLE_SCRAM_SHA256_PLUS": "1", "DISABLE_AUTH_LOGIN": "1",
                           "DISABLE_AUTH_PLAIN": "1"})
        mechs = advertised_mechanisms(env, ALL, tls=True)
        for gone in ("CRAM-RIPEMD", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "LOGIN", "PLAIN"):
            self.assertNotIn(gone, mechs)
        self.assertIn("SCRAM-SHA-1-PLUS", mechs)

    def test_secure_auth(self):
        """SECURE_AUTH hides LOGIN and PLAIN until TLS is on."""
        env = Environment({"SECURE_AUTH": "1"})
        self.assertNotIn("PLAIN", advertised_mechanisms(env, ALL, tls=False))
        self.assertIn("PLAIN", advertised_mechanisms(env, ALL, tls=True))

    def test_capabilities_limit(self):
        """Only what the checkers can verify is offered."""
        self.assertEqual(advertised_mechanisms(Environment(), {CAP_PLAIN}), ["LOGIN", "PLAIN"])
        self.assertEqual(advertised_mechanisms(Environment(), {CAP_SCRAM_SHA256}, tls=True),
                         ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
        self.assertEqual(advertised_mechanisms(Environment(), set()), [])

    def test_portal_capabilities(self):
        """A checkpassword program verifies PLAIN/LOGIN and CRAM/DIGEST, never SCRAM."""
        portal = make_portal([CheckPasswordChecker(["/bin/false"], reactor=None)])
        self.assertEqual(capabilities(portal), {CAP_PLAIN, CAP_CRAM})
        portal = make_portal([MemoryChecker({})])
        self.assertEqual(capabilities(portal), ALL)
