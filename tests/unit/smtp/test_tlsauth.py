"""STARTTLS (RFC 3207) and AUTH (RFC 4954) in the SMTP protocol, on a
StringTransport with a Clock."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from .support import REMOTE_IP, Harness
from .tlsauth_support import TLS_DESC, b64, cram_response, tls_harness

PLAIN_OK = b64("\0alice@example.com\0secret")
PLAIN_BAD = b64("\0alice@example.com\0wrong")
MECHS = "LOGIN PLAIN CRAM-MD5 CRAM-SHA1 CRAM-SHA224 CRAM-SHA256 CRAM-SHA384 " \
        "CRAM-SHA512 CRAM-RIPEMD DIGEST-MD5"


class StartTLSTests(SynchronousTestCase):

    def test_advertised_with_certificate(self):
        """EHLO offers STARTTLS (before HELP) when the service has a certificate."""
        h = tls_harness(self, auth=False)
        h.send("EHLO client.example\r\n")
        self.assertEqual(h.replies()[-2:], ["250-STARTTLS", "250 HELP"])

    def test_not_advertised_without_certificate(self):
        """Without a certificate there is no STARTTLS keyword and STARTTLS gets 454."""
        h = Harness(self)
        h.send("EHLO client.example\r\n")
        self.assertNotIn("250-STARTTLS", h.replies())
        h.send("STARTTLS\r\n")
        self.assertEqual(h.replies(), ["454 TLS not available: missing certificate (#4.3.0)"])

    def test_starttls_starts_tls_after_220(self):
        """``220 ready for tls`` goes out in clear, then the transport starts TLS."""
        h = tls_harness(self)
        h.send("EHLO client.example\r\nSTARTTLS\r\n")
        self.assertIs(h.transport.tls_options, h.options)
        self.assertTrue(h.transport.clear_before_tls.endswith(b"220 ready for tls\r\n"))
        self.assertTrue(h.proto.session.tls)

    def test_pipelined_commands_after_starttls_discarded(self):
        """Commands sent in clear behind STARTTLS are thrown away (CVE-2011-0411)."""
        h = tls_harness(self)
        h.send("EHLO client.example\r\n")
        h.replies()
        h.send("STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.replies(), ["220 ready for tls"])
        self.assertIsNone(h.proto.session.transaction)
        h.send("RCPT TO:<b@example.com>\r\n")
        self.assertEqual(h.codes(), [503])

    def test_state_reset_after_tls(self):
        """After TLS the HELO and any transaction are forgotten; EHLO no longer offers STARTTLS."""
        h = tls_harness(self)
        h.send("EHLO client.example\r\nMAIL FROM:<a@example.net>\r\n")
        h.replies()
        h.send("STARTTLS\r\n")
        h.replies()
        s = h.proto.session
        self.assertIsNone(s.helo)
        self.assertIsNone(s.transaction)
        self.assertFalse(s.esmtp)
        h.send("EHLO client.example\r\n")
        replies = h.replies()
        self.assertNotIn("250-STARTTLS", replies)
        self.assertIn(f"250-AUTH {MECHS}", replies)

    def test_starttls_errors(self):
        """STARTTLS with an argument → 501; a second STARTTLS under TLS → 502."""
        h = tls_harness(self)
        h.send("STARTTLS now\r\n")
        self.assertEqual(h.replies(), ["501 Syntax error (no parameters allowed) (#5.5.4)"])
        h.send("STARTTLS\r\n")
        h.replies()
        h.send("STARTTLS\r\n")
        self.assertEqual(h.codes(), [502])

    def test_received_names_tls_version_and_cipher(self):
        """Over TLS the Received line says ``with (<version> <cipher> encrypted) ESMTPS``."""
        h = tls_harness(self)
        h.send("STARTTLS\r\n")
        h.replies()
        h.send("EHLO client.example\r\n")
        h.replies()
        h.transaction()
        h.send("hi\r\n.\r\n")
        self.assertEqual(h.codes(), [250])
        data = h.sink.messages[0].data
        self.assertIn(f"  by mx.example.com with {TLS_DESC} ESMTPS; ".encode(), data)


class AuthTests(SynchronousTestCase):

    def ehlo(self, h):
        h.send("EHLO client.example\r\n")
        return h.replies()

    def test_advertised(self):
        """EHLO offers ``AUTH <mechs>`` and ``AUTH=<mechs>`` right after the greeting line."""
        h = tls_harness(self)
        replies = self.ehlo(h)
        self.assertEqual(replies[1:3], [f"250-AUTH {MECHS}", f"250-AUTH={MECHS}"])

    def test_not_advertised_without_checkers(self):
        """No checker configured: no AUTH keyword, and AUTH gets 503 auth not available."""
        h = Harness(self)
        self.assertFalse(any("AUTH" in r for r in self.ehlo(h)))
        h.send(f"AUTH PLAIN {PLAIN_OK}\r\n")
        self.assertEqual(h.replies(), ["503 auth not available (#5.3.3)"])

    def test_help_lists_auth(self):
        """With AUTH configured HELP lists it, as upstream."""
        h = tls_harness(self)
        h.send("HELP\r\n")
        self.assertEqual(h.replies()[-1], "214 HELO EHLO RSET NOOP MAIL RCPT DATA AUTH VRFY HELP QUIT")

    def test_plain_initial_response_grants_relaying(self):
        """AUTH PLAIN with an initial response → 235; relaying is then allowed."""
        h = tls_harness(self)
        self.ehlo(h)
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@remote.example>\r\nRSET\r\n")
        self.assertEqual(h.codes(), [250, 553, 250])
        h.send(f"AUTH PLAIN {PLAIN_OK}\r\n")
        self.assertEqual(h.replies(), ["235 ok, go ahead (#2.0.0)"])
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@remote.example>\r\n")
        self.assertEqual(h.codes(), [250, 250])
        self.assertEqual(h.proto.session.authenticated, "alice@example.com")
        self.assertEqual(h.proto.session.env["RELAYCLIENT"], "")
        self.assertEqual(h.proto.session.env["TCPREMOTEINFO"], "alice@example.com")

    def test_plain_with_empty_challenge(self):
        """AUTH PLAIN alone gets an empty 334; the response line then authenticates."""
        h = tls_harness(self)
        h.send("AUTH PLAIN\r\n")
        self.assertEqual(h.output(), b"334 \r\n")
        h.send(PLAIN_OK + "\r\n")
        self.assertEqual(h.codes(), [235])

    def test_login(self):
        """AUTH LOGIN asks Username: and Password: in base64."""
        h = tls_harness(self)
        h.send("AUTH LOGIN\r\n")
        self.assertEqual(h.replies(), ["334 VXNlcm5hbWU6"])
        h.send(b64("alice@example.com") + "\r\n")
        self.assertEqual(h.replies(), ["334 UGFzc3dvcmQ6"])
        h.send(b64("secret") + "\r\n")
        self.assertEqual(h.codes(), [235])

    def test_cram_md5(self):
        """AUTH CRAM-MD5: challenge, HMAC response, 235."""
        h = tls_harness(self)
        h.send("AUTH CRAM-MD5\r\n")
        [line] = h.replies()
        self.assertTrue(line.startswith("334 "))
        h.send(cram_response(b"alice@example.com", b"secret", line[4:]) + "\r\n")
        self.assertEqual(h.codes(), [235])

    def test_cancel(self):
        """``*`` cancels the exchange with 501 and the session goes on."""
        h = tls_harness(self)
        h.send("AUTH LOGIN\r\n*\r\nNOOP\r\n")
        self.assertEqual(h.replies(), ["334 VXNlcm5hbWU6", "501 auth exchange cancelled (#5.0.0)",
                                       "250 ok"])
        self.assertIsNone(h.proto.session.authenticated)

    def test_malformed_base64(self):
        """A response that is not base64 → 501 malformed auth input."""
        h = tls_harness(self)
        h.send("AUTH PLAIN !!!\r\n")
        self.assertEqual(h.replies(), ["501 malformed auth input (#5.5.2)"])

    def test_failure_is_delayed(self):
        """A wrong password is answered 535 only after 5 seconds; pipelined commands wait."""
        h = tls_harness(self)
        h.send(f"AUTH PLAIN {PLAIN_BAD}\r\nNOOP\r\n")
        self.assertEqual(h.replies(), [])
        h.clock.advance(4.9)
        self.assertEqual(h.replies(), [])
        h.clock.advance(0.1)
        self.assertEqual(h.replies(), ["535 authorization failed (#5.7.1)", "250 ok"])
        self.assertFalse(h.closed)

    def test_failures_counted_then_closed(self):
        """After MAX_AUTH_FAILURES failures the connection is closed."""
        h = tls_harness(self, env={"MAX_AUTH_FAILURES": "2"})
        h.send(f"AUTH PLAIN {PLAIN_BAD}\r\n")
        h.clock.advance(5)
        self.assertEqual(h.codes(), [535])
        self.assertFalse(h.closed)
        h.send(f"AUTH PLAIN {PLAIN_BAD}\r\n")
        h.clock.advance(5)
        self.assertEqual(h.codes(), [535])
        self.assertTrue(h.closed)

    def test_default_failure_limit(self):
        """Without MAX_AUTH_FAILURES the fifth failure closes the connection."""
        h = tls_harness(self)
        for _ in range(4):
            h.send(f"AUTH PLAIN {PLAIN_BAD}\r\n")
            h.clock.advance(5)
        self.assertFalse(h.closed)
        h.send(f"AUTH PLAIN {PLAIN_BAD}\r\n")
        h.clock.advance(5)
        self.assertTrue(h.closed)

    def test_connection_lost_during_delay(self):
        """A client that leaves during the failure delay leaves no timer behind."""
        h = tls_harness(self)
        h.send(f"AUTH PLAIN {PLAIN_BAD}\r\n")
        h.proto.connectionLost(None)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_temporary_failure(self):
        """A checker's temporary failure → 454 at once."""
        h = tls_harness(self)
        h.send(f"AUTH PLAIN {b64(chr(0) + 'tempfail@example.com' + chr(0) + 'x')}\r\n")
        self.assertEqual(h.replies(), ["454 temporary authentication failure (#4.3.0)"])

    def test_only_once(self):
        """A second AUTH gets 503 you're already authenticated."""
        h = tls_harness(self)
        h.send(f"AUTH PLAIN {PLAIN_OK}\r\nAUTH PLAIN {PLAIN_OK}\r\n")
        self.assertEqual(h.replies(), ["235 ok, go ahead (#2.0.0)",
                                       "503 you're already authenticated (#5.5.0)"])

    def test_not_during_transaction(self):
        """AUTH after MAIL gets 503 no auth during mail transaction."""
        h = tls_harness(self)
        h.send(f"MAIL FROM:<a@example.net>\r\nAUTH PLAIN {PLAIN_OK}\r\n")
        self.assertEqual(h.replies()[-1], "503 no auth during mail transaction (#5.5.0)")

    def test_unknown_mechanism(self):
        """A mechanism not offered → 504 auth type unimplemented."""
        h = tls_harness(self)
        h.send("AUTH GSSAPI\r\nAUTH SCRAM-SHA-256-PLUS\r\n")
        self.assertEqual(h.replies(), ["504 auth type unimplemented (#5.5.1)"] * 2)

    def test_no_relay_account(self):
        """An account its checker marks no-relay authenticates but may not relay."""
        h = tls_harness(self)
        h.send(f"AUTH PLAIN {b64(chr(0) + 'norelay@example.com' + chr(0) + 'secret')}\r\n")
        self.assertEqual(h.codes(), [235])
        h.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<x@remote.example>\r\n")
        self.assertEqual(h.codes(), [250, 553])

    def test_received_names_auth_user(self):
        """The Received line carries ``(user@ip)`` and ``with ESMTPA``."""
        h = tls_harness(self)
        h.send(f"EHLO client.example\r\nAUTH PLAIN {PLAIN_OK}\r\n")
        h.replies()
        h.transaction(rcpts=("<x@remote.example>",))
        h.send("hi\r\n.\r\n")
        self.assertEqual(h.codes(), [250])
        data = h.sink.messages[0].data
        self.assertIn(f"(HELO client.example) (alice@example.com@{REMOTE_IP})\n".encode(), data)
        self.assertIn(b"  by mx.example.com with ESMTPA; ", data)

    def test_received_esmtpsa(self):
        """Authenticated over TLS: ``with (<tls>) ESMTPSA``."""
        h = tls_harness(self)
        h.send("STARTTLS\r\n")
        h.send(f"EHLO client.example\r\nAUTH PLAIN {PLAIN_OK}\r\n")
        h.replies()
        h.transaction()
        h.send("hi\r\n.\r\n")
        self.assertIn(f"with {TLS_DESC} ESMTPSA; ".encode(), h.sink.messages[0].data)

    def test_secure_auth(self):
        """SECURE_AUTH: LOGIN/PLAIN withheld before TLS, and refused with 530 auth type prohibited."""
        h = tls_harness(self, env={"SECURE_AUTH": ""})
        self.assertNotIn("LOGIN", self.ehlo(h)[1])
        h.send(f"AUTH PLAIN {PLAIN_OK}\r\n")
        self.assertEqual(h.replies(), ["530 auth type prohibited (#5.7.0)"])
        h.send("STARTTLS\r\n")
        h.send("EHLO x\r\n")
        self.assertIn(f"250-AUTH {MECHS}", h.replies())


class ForceTLSAndRequireAuthTests(SynchronousTestCase):

    def test_force_tls(self):
        """FORCE_TLS: no AUTH offered or accepted and no MAIL before STARTTLS; both after."""
        h = tls_harness(self, env={"FORCE_TLS": ""})
        h.send("EHLO client.example\r\n")
        self.assertFalse(any("AUTH" in r for r in h.replies()))
        h.send(f"AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@example.net>\r\n")
        self.assertEqual(h.replies(), ["530 must issue STARTTLS first (#5.7.0)"] * 2)
        h.send("STARTTLS\r\n")
        h.replies()
        h.send("EHLO client.example\r\n")
        self.assertIn(f"250-AUTH {MECHS}", h.replies())
        h.send(f"AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@example.net>\r\n")
        self.assertEqual(h.codes(), [235, 250])

    def test_require_auth(self):
        """REQUIREAUTH: MAIL gets 530 authentication required until AUTH succeeded."""
        h = tls_harness(self, env={"REQUIREAUTH": "1"})
        h.send("EHLO client.example\r\n")
        h.replies()
        h.send("MAIL FROM:<a@example.net>\r\n")
        self.assertEqual(h.replies(), ["530 authentication required (#5.7.1)"])
        h.send(f"AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@example.net>\r\n")
        self.assertEqual(h.codes(), [235, 250])
