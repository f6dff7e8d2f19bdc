"""The ESMTP client on real loopback sockets: PIPELINING (RFC 2920),
BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) against a scripted server,
and SMTP AUTH with every mechanism against this project's own SMTP
service acting as the smarthost (STARTTLS first, as qmail-remote does)."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor

from indimail.delivery.remote import RemoteDelivery
from tests.integration.smtp.test_tlsauth import PASSWORD, USER, TLSAuthBase
from tests.unit.delivery.support import control, make_home, queue_message
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedFactory, ScriptedServerCase, ScriptedSMTP

BODY = b"Subject: test\n\nbody\n"
EHLO_PIPE = "250-test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME"


class ChunkSMTP(ScriptedSMTP):
    """Records, for each command line, which read (chunk) brought it."""

    def connectionMade(self):
        self.chunk = 0
        super().connectionMade()

    def dataReceived(self, data):
        self.chunk += 1
        super().dataReceived(data)

    def lineReceived(self, line):
        if not self.in_data:
            self.factory.chunks.append((line.decode("utf-8", "replace").split(" ")[0],
                                        self.chunk))
        super().lineReceived(line)


class ChunkFactory(ScriptedFactory):
    protocol = ChunkSMTP

    def __init__(self, **replies):
        super().__init__(**replies)
        self.chunks: list[tuple[str, int]] = []


class Base(ScriptedServerCase):
    factory_class = ChunkFactory

    def deliver(self, port, body=BODY, sender="bob@example.org",
                recipient="carol@remote.test", **env):
        queue, msgid = queue_message(self.home, body, msgid=4343)
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor,
                               env={"SMTPROUTE": f":127.0.0.1:{port}", **env},
                               resolver=FakeResolver())
        return agent.deliver(queue, msgid, sender, recipient)


class PipeliningTests(Base):

    async def test_envelope_in_one_write(self):
        """With PIPELINING offered, MAIL, RCPT and DATA reach the server in
        one read (one write), and the delivery succeeds."""
        server, port = self.serve(ehlo=EHLO_PIPE)
        result = await self.deliver(port)
        self.assertEqual(result.status, "success", result.report)
        chunk = dict(server.chunks)
        self.assertEqual(chunk["MAIL"], chunk["RCPT"])
        self.assertEqual(chunk["RCPT"], chunk["DATA"])
        self.assertNotEqual(chunk["EHLO"], chunk["MAIL"])
        self.assertEqual(server.messages, [b"Subject: test\r\n\r\nbody\r\n"])

    async def test_without_pipelining_one_command_per_write(self):
        """A server not offering PIPELINING gets MAIL, RCPT and DATA one at a time."""
        server, port = self.serve()
        result = await self.deliver(port)
        self.assertEqual(result.status, "success", result.report)
        chunk = dict(server.chunks)
        self.assertEqual(len({chunk["MAIL"], chunk["RCPT"], chunk["DATA"]}), 3)

    async def test_sender_refused_reports_mail_reply(self):
        """Replies are matched in order: a 5xx to MAIL is reported as the
        sender's refusal even though RCPT and DATA were sent with it."""
        server, port = self.serve(ehlo=EHLO_PIPE, mail="553 no such sender",
                                  rcpt="503 need MAIL", data="503 need RCPT")
        result = await self.deliver(port)
        self.assertEqual(result.status, "failure", result.report)
        self.assertIn("Connected to 127.0.0.1 but sender was rejected.", result.report)
        self.assertIn("553 no such sender", result.report)
        self.assertEqual(server.messages, [])

    async def test_recipient_refused_data_accepted(self):
        """A server that answers 354 to a pipelined DATA after refusing the
        only recipient gets an empty message's dot, never the message; the
        result is the recipient's refusal."""
        server, port = self.serve(ehlo=EHLO_PIPE, rcpt="450 try later", data="354 go")
        result = await self.deliver(port)
        self.assertEqual(result.status, "deferral", result.report)
        self.assertIn("does not like recipient.", result.report)
        self.assertIn("450 try later", result.report)
        self.assertEqual(server.messages, [b""])

    async def test_failure_script_sees_mail_reply(self):
        """ONFAILURE_REMOTE gets the refused MAIL's code as SMTPCODE, not the
        code of the pipelined commands read after it."""
        server, port = self.serve(ehlo=EHLO_PIPE, mail="553 no such sender",
                                  rcpt="503 need MAIL", data="503 need RCPT")
        script = self.home.path / "onfail"
        script.write_text('#!/bin/sh\necho "$SMTPCODE" > "$0.code"\n')
        script.chmod(0o755)
        result = await self.deliver(port, ONFAILURE_REMOTE=str(script),
                                    PATH=os.environ.get("PATH", "/usr/bin:/bin"))
        self.assertEqual(result.status, "failure", result.report)
        self.assertEqual((self.home.path / "onfail.code").read_text(), "553\n")

    async def test_data_refused(self):
        """A refused pipelined DATA is reported as the DATA failure."""
        server, port = self.serve(ehlo=EHLO_PIPE, data="554 no")
        result = await self.deliver(port)
        self.assertEqual(result.status, "failure", result.report)
        self.assertIn("127.0.0.1 failed on DATA command.", result.report)


class EightBitTests(Base):

    async def test_body_8bitmime_declared(self):
        """An 8-bit message to a server offering 8BITMIME goes with BODY=8BITMIME."""
        server, port = self.serve()
        body = "Subject: café\n\nnaïve\n".encode()
        result = await self.deliver(port, body)
        self.assertEqual(result.status, "success", result.report)
        [mail] = [c for c in server.commands if c.startswith("MAIL")]
        self.assertTrue(mail.endswith(" BODY=8BITMIME"), mail)
        self.assertEqual(server.messages, [body.replace(b"\n", b"\r\n")])

    async def test_seven_bit_not_declared(self):
        """A 7-bit message declares no BODY parameter."""
        server, port = self.serve()
        await self.deliver(port)
        [mail] = [c for c in server.commands if c.startswith("MAIL")]
        self.assertNotIn("BODY=", mail)

    async def test_large_message_8bit_found_past_memory_limit(self):
        """A message larger than what is kept in memory is streamed from its
        file; an 8-bit byte near its end still declares BODY=8BITMIME, and a
        7-bit one of the same size declares nothing."""
        server, port = self.serve(ehlo="250-test\r\n250-SIZE 10000000\r\n250 8BITMIME")
        filler = b"x" * 99 + b"\n"
        body = b"Subject: big\n\n" + filler * 2000 + "naïve\n".encode()
        result = await self.deliver(port, body)
        self.assertEqual(result.status, "success", result.report)
        [mail] = [c for c in server.commands if c.startswith("MAIL")]
        self.assertTrue(mail.endswith(" BODY=8BITMIME"), mail)
        self.assertEqual(server.messages, [body.replace(b"\n", b"\r\n")])
        server.commands.clear()
        result = await self.deliver(port, b"Subject: big\n\n" + filler * 2000)
        self.assertEqual(result.status, "success", result.report)
        [mail] = [c for c in server.commands if c.startswith("MAIL")]
        self.assertNotIn("BODY=", mail)

    async def test_no_8bitmime_sent_as_is(self):
        """Without 8BITMIME offered the 8-bit message goes as it is, with no
        BODY parameter (what qmail-remote does)."""
        server, port = self.serve(ehlo="250-test\r\n250 SIZE 100000")
        body = "Subject: x\n\nnaïve\n".encode()
        result = await self.deliver(port, body)
        self.assertEqual(result.status, "success", result.report)
        [mail] = [c for c in server.commands if c.startswith("MAIL")]
        self.assertNotIn("BODY=", mail)
        self.assertEqual(server.messages, [body.replace(b"\n", b"\r\n")])


UTF8_RECEIVED = (b"Received: from a (HELO b) (127.0.0.1)\n  by mx.example.com with UTF8ESMTPS; "
                 b"1 Jan 2026 00:00:00 -0000\nSubject: x\n\nbody\n")


class SMTPUTF8Tests(Base):

    async def test_received_marker_sends_smtputf8(self):
        """A message whose Received line says ``with UTF8ESMTPS`` goes with
        SMTPUTF8 on MAIL when the server offers it."""
        server, port = self.serve(ehlo="250-test\r\n250-PIPELINING\r\n250 SMTPUTF8")
        result = await self.deliver(port, UTF8_RECEIVED)
        self.assertEqual(result.status, "success", result.report)
        [mail] = [c for c in server.commands if c.startswith("MAIL")]
        self.assertTrue(mail.endswith(" SMTPUTF8"), mail)

    async def test_address_needs_smtputf8(self):
        """A non-ASCII recipient goes with SMTPUTF8 when offered."""
        server, port = self.serve(ehlo="250-test\r\n250 SMTPUTF8")
        result = await self.deliver(port, recipient="jösé@remote.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertIn("MAIL FROM:<bob@example.org> SMTPUTF8", server.commands)
        self.assertIn('RCPT TO:<"jösé"@remote.test>', server.commands)   # quote2, as upstream

    async def test_not_offered_fails_permanently(self):
        """When the message needs SMTPUTF8 and the server lacks it the
        delivery fails permanently with qmail-remote's words, before MAIL."""
        for kwargs in ({"body": UTF8_RECEIVED}, {"sender": "bøb@example.org"}):
            server, port = self.serve()
            result = await self.deliver(port, **kwargs)
            self.assertEqual(result.status, "failure", result.report)
            self.assertIn("Connected to 127.0.0.1 but server does not support unicode in "
                          "email addresses.", result.report)
            self.assertFalse([c for c in server.commands if c.startswith("MAIL")])

    async def test_ascii_message_no_smtputf8(self):
        """An ASCII message never sends SMTPUTF8, even when offered."""
        server, port = self.serve(ehlo="250-test\r\n250 SMTPUTF8")
        await self.deliver(port)
        [mail] = [c for c in server.commands if c.startswith("MAIL")]
        self.assertNotIn("SMTPUTF8", mail)


class Recording(RemoteDelivery):
    """Keeps the commands the client wrote and waits for its connections to close."""

    async def _connect(self, *args, **kwargs):
        proto = await super()._connect(*args, **kwargs)
        if proto is not None:
            self.lost = getattr(self, "lost", []) + [proto.when_lost()]
            self.sent = getattr(self, "sent", [])
            command = proto.command

            def record(line):
                self.sent.append(line)
                command(line)
            proto.command = record
        return proto


class OwnSmarthostAuthTests(TLSAuthBase):
    """Every mechanism against this project's SMTP service: STARTTLS, AUTH
    with the route's credentials, and relaying the message it grants."""

    async def relay(self, mechanism, password=PASSWORD, control_files=None, env=None,
                    recipient="carol@remote.example"):
        await self.start(control_files, env=env)
        base = self.mktemp()
        os.makedirs(base)
        home = make_home(base)
        queue, msgid = queue_message(home, BODY)
        agent = Recording(home, control(home), reactor=reactor,
                          env={"SMTPROUTE": f":127.0.0.1:{self.portno} {USER} {password}",
                               "AUTH_SMTP": mechanism},
                          resolver=FakeResolver())
        result = await agent.deliver(queue, msgid, "bob@example.org", recipient)
        await defer.gatherResults(agent.lost)
        return result, agent.sent

    async def check(self, mechanism, **kwargs):
        result, sent = await self.relay(mechanism, **kwargs)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual([line.split(" ")[1] for line in sent if line.startswith("AUTH ")],
                         [mechanism])
        self.assertIn("STARTTLS", sent)
        [(envelope, message)] = self.queued()
        self.assertEqual(envelope.recipients, ["carol@remote.example"])
        self.assertIn(b"ESMTPSA", message)
        self.assertIn(b"\nSubject: test\n\nbody\n", message)

    async def test_plain(self):
        """AUTH_SMTP=PLAIN authenticates and relays."""
        await self.check("PLAIN")

    async def test_login(self):
        """AUTH_SMTP=LOGIN authenticates and relays."""
        await self.check("LOGIN")

    async def test_cram_md5(self):
        """AUTH_SMTP=CRAM-MD5 authenticates and relays."""
        await self.check("CRAM-MD5")

    async def test_cram_sha1(self):
        """AUTH_SMTP=CRAM-SHA1 authenticates and relays."""
        await self.check("CRAM-SHA1")

    async def test_cram_sha224(self):
        """AUTH_SMTP=CRAM-SHA224 authenticates and relays."""
        await self.check("CRAM-SHA224")

    async def test_cram_sha256(self):
        """AUTH_SMTP=CRAM-SHA256 authenticates and relays."""
        await self.check("CRAM-SHA256")

    async def test_cram_sha384(self):
        """AUTH_SMTP=CRAM-SHA384 authenticates and relays."""
        await self.check("CRAM-SHA384")

    async def test_cram_sha512(self):
        """AUTH_SMTP=CRAM-SHA512 authenticates and relays."""
        await self.check("CRAM-SHA512")

    async def test_cram_ripemd(self):
        """AUTH_SMTP=CRAM-RIPEMD authenticates and relays."""
        await self.check("CRAM-RIPEMD")

    async def test_digest_md5(self):
        """AUTH_SMTP=DIGEST-MD5 authenticates (rspauth checked) and relays."""
        await self.check("DIGEST-MD5")

    async def test_scram_sha1(self):
        """AUTH_SMTP=SCRAM-SHA-1 authenticates and relays."""
        await self.check("SCRAM-SHA-1")

    async def test_scram_sha256(self):
        """AUTH_SMTP=SCRAM-SHA-256 authenticates and relays."""
        await self.check("SCRAM-SHA-256")

    async def test_scram_sha1_plus(self):
        """AUTH_SMTP=SCRAM-SHA-1-PLUS binds to the TLS channel and relays."""
        await self.check("SCRAM-SHA-1-PLUS")

    async def test_scram_sha256_plus_tls13(self):
        """SCRAM-SHA-256-PLUS over TLS 1.3 (tls-exporter) relays."""
        await self.check("SCRAM-SHA-256-PLUS")

    async def test_scram_sha256_plus_tls12(self):
        """SCRAM-SHA-256-PLUS over TLS 1.2 (tls-unique, the client's Finished) relays."""
        await self.check("SCRAM-SHA-256-PLUS", control_files={"tlsservermethod": "TLSv1_2\n"})

    async def test_automatic_choice_is_strongest(self):
        """AUTH_SMTP empty picks SCRAM-SHA-256-PLUS, the first of qmail-remote's order."""
        result, sent = await self.relay("")
        self.assertEqual(result.status, "success", result.report)
        self.assertIn("AUTH SCRAM-SHA-256-PLUS", [" ".join(line.split(" ")[:2]) for line in sent])

    async def test_wrong_password_scram(self):
        """A wrong password with SCRAM defers, naming the refused step."""
        result, _sent = await self.relay("SCRAM-SHA-256", password="wrong")
        self.assertEqual(result.status, "deferral", result.report)
        self.assertIn("but authentication was rejected", result.report)
        self.assertEqual(self.queued(), [])

    async def test_wrong_password_digest(self):
        """A wrong password with DIGEST-MD5 defers and queues nothing."""
        result, _sent = await self.relay("DIGEST-MD5", password="wrong")
        self.assertEqual(result.status, "deferral", result.report)
        self.assertIn("but authentication was rejected", result.report)
        self.assertEqual(self.queued(), [])

    async def test_smtputf8_recipient_to_own_service(self):
        """A non-ASCII recipient relays with SMTPUTF8 to our smtpd offering
        it (SMTPUTF8 set), which marks the Received line UTF8ESMTPSA."""
        result, sent = await self.relay("PLAIN", env={"SMTPUTF8": ""},
                                        recipient="jösé@remote.example")
        self.assertEqual(result.status, "success", result.report)
        [(envelope, message)] = self.queued()
        self.assertEqual(envelope.recipients, ["jösé@remote.example"])
        self.assertIn(b"UTF8ESMTPSA", message)
