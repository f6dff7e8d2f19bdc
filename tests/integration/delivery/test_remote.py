"""RemoteDelivery against real SMTP servers on loopback: a scripted Twisted
server for every reply class, and Postfix's smtp-sink."""

import os
import shutil
import tempfile

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from indimail.delivery.remote import RemoteDelivery
from tests.unit.delivery.support import control, make_home, queue_message
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedFactory, ScriptedServerCase

BODY = b"Subject: test\n\n.leading dot\nline two\n"


class RemoteTests(ScriptedServerCase):
    factory_class = ScriptedFactory
    BODY = BODY

    def agent(self, route, resolver=None, clock=None, **env):
        env = dict(env, SMTPROUTE=route)
        return RemoteDelivery(self.home, control(self.home), reactor=reactor, env=env,
                              resolver=resolver or FakeResolver(), clock=clock)

    def deliver(self, agent, sender="bob@example.org", recipient="carol@remote.test",
                qqeh=None):
        return agent.deliver(self.queue, self.msgid, sender, recipient, qqeh)

    async def test_success(self):
        """A 250 after the dot is success with qmail-remote's report text, and the
        message went out with CRLF and dot-stuffing after the extra headers."""
        server, port = self.serve()
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"), qqeh="X-QHPSI: clean\n")
        self.assertEqual(result.status, "success")
        self.assertEqual(result.report,
                         "From: <bob@example.org> RCPT: <carol@remote.test> 127.0.0.1 "
                         "accepted message - Protocol SMTP.\nRemote host said: 250 ok queued")
        self.assertEqual(server.messages, [b"X-QHPSI: clean\r\nSubject: test\r\n\r\n"
                                           b"..leading dot\r\nline two\r\n"])
        self.assertEqual(server.commands[:4], [
            "EHLO mx.example.com", f"MAIL FROM:<bob@example.org> SIZE={len(BODY)}",
            "RCPT TO:<carol@remote.test>", "DATA"])

    async def test_large_message_streams(self):
        """A multi-megabyte message goes out whole, chunk by chunk."""
        line = b"x" * 99 + b"\n"
        self.queue, self.msgid = queue_message(self.home, b"Subject: big\n\n" + line * 40000, 6)
        server, port = self.serve()
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "success", result.report)
        [message] = server.messages
        self.assertEqual(len(message), len(b"Subject: big\r\n\r\n") + 40000 * 101)

    async def test_missing_message(self):
        """A mess file that is gone defers with qmail-remote's read error."""
        server, port = self.serve()
        self.queue.mess(self.msgid).unlink()
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report),
                         ("deferral", "Unable to read message. (#4.3.0)"))

    async def test_helohost(self):
        """control/helohost names us in EHLO."""
        (self.home.control / "helohost").write_text("out.example.com\n")
        server, port = self.serve()
        await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(server.commands[0], "EHLO out.example.com")

    async def test_no_size_without_extension(self):
        """SIZE is only sent when the server announces it."""
        server, port = self.serve(ehlo="250 test")
        await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(server.commands[1], "MAIL FROM:<bob@example.org>")

    async def test_helo_fallback(self):
        """A 5xx to EHLO makes the client fall back to HELO."""
        server, port = self.serve(ehlo="502 what")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "success")
        self.assertEqual(server.commands[:2], ["EHLO mx.example.com", "HELO mx.example.com"])

    async def test_null_sender(self):
        """The null sender is sent as MAIL FROM:<>."""
        server, port = self.serve(ehlo="250 test")
        await self.deliver(self.agent(f":127.0.0.1:{port}"), sender="")
        self.assertEqual(server.commands[1], "MAIL FROM:<>")

    async def test_greeting_5xx(self):
        """A 5xx greeting fails permanently."""
        server, port = self.serve(greeting="554 go away")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "failure",
            "Connected to 127.0.0.1 but greeting failed.\nRemote host said: 554 go away"))

    async def test_greeting_4xx_tries_next(self):
        """A 4xx greeting moves on to the next address of the route."""
        busy, port = self.serve(greeting="421 busy")
        good, _ = self.serve(interface="127.0.0.2", port=port)
        resolver = FakeResolver(addrs={"relay.test": ["127.0.0.1", "127.0.0.2"]})
        result = await self.deliver(self.agent(f":relay.test:{port}", resolver))
        self.assertEqual(result.status, "success")
        self.assertIn("127.0.0.2 accepted message", result.report)
        self.assertEqual(len(good.messages), 1)

    async def test_helo_rejected(self):
        """A rejected HELO name gives qmail-remote's "my name" text."""
        server, port = self.serve(ehlo="550 no", helo="550 not you")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "failure", "Connected to 127.0.0.1 but my name -->mx.example.com<-- was "
            "rejected :(.\nRemote host said: 550 not you"))

    async def test_sender_rejected(self):
        """A 5xx to MAIL FROM fails permanently; 4xx defers."""
        server, port = self.serve(mail="553 sender denied")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "failure", "Connected to 127.0.0.1 but sender was rejected.\n"
            "Remote host said: 553 sender denied"))
        server, port = self.serve(mail="451 later")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "deferral")

    async def test_recipient_rejected(self):
        """A 5xx to RCPT fails with "does not like recipient"."""
        server, port = self.serve(rcpt="550 5.1.1 no such user")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "failure",
            "From: <bob@example.org> RCPT: <carol@remote.test> 127.0.0.1 does not like "
            "recipient.\nRemote host said: 550 5.1.1 no such user\nGiving up on 127.0.0.1."))
        self.assertEqual(server.messages, [])

    async def test_recipient_deferred(self):
        """A 4xx to RCPT defers."""
        server, port = self.serve(rcpt="451 greylisted")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "deferral")
        self.assertIn("451 greylisted", result.report)

    async def test_data_rejected(self):
        """A 5xx to DATA fails."""
        server, port = self.serve(data="554 no data")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "failure")
        self.assertTrue(result.report.endswith(
            "127.0.0.1 failed on DATA command.\nRemote host said: 554 no data"))

    async def test_rejected_after_message(self):
        """A 4xx after the dot defers with "failed after I sent the message"."""
        server, port = self.serve(dot="452 no space")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "deferral")
        self.assertTrue(result.report.endswith(
            "127.0.0.1 failed after I sent the message.\nRemote host said: 452 no space"))

    async def test_dropped_after_dot(self):
        """A connection lost after the dot is a possible duplicate, deferred."""
        server, port = self.serve(dot="drop")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "deferral")
        self.assertIn("Connected to 127.0.0.1 but connection died. Possible duplicate! "
                      "(#4.4.2)", result.report)

    async def test_timeout(self):
        """No reply within timeoutremote drops the connection and defers."""
        (self.home.control / "timeoutremote").write_text("30\n")
        clock = task.Clock()
        server, port = self.serve(rcpt=None)
        result_d = self.deliver(self.agent(f":127.0.0.1:{port}", clock=clock))
        await server.when("rcpt")
        await task.deferLater(reactor, 0, lambda: None)  # let the client start waiting
        clock.advance(29)
        self.assertNoResult(result_d)
        clock.advance(1)
        result = await result_d
        self.assertEqual((result.status, result.report), (
            "deferral", "Connected to 127.0.0.1 but connection died. (#4.4.2)"))

    async def test_partial_final_line(self):
        """A message without a final newline is refused and never completed."""
        self.queue, self.msgid = queue_message(self.home, b"Subject: x\n\nno newline", 5)
        server, port = self.serve()
        closed = server.when_closed()
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "failure", "SMTP cannot transfer messages with partial final lines. (#5.6.2)"))
        await closed
        self.assertEqual(server.messages, [])

    async def test_no_connection(self):
        """Nobody listening: deferral naming the host, addresses and port."""
        _, port = self.serve()
        # a port that was free a moment ago: listen and close again
        from indimail.testing import free_port
        port = free_port()
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "deferral", f"Sorry, I wasn't able to establish a SMTP connection for 127.0.0.1 "
            f"to 127.0.0.1 port {port} bind IP [0.0.0.0]. (#4.4.1)"))

    async def test_unknown_domain(self):
        """A domain that does not exist fails permanently."""
        resolver = FakeResolver(missing={"nowhere.test"})
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor, env={},
                               resolver=resolver)
        result = await self.deliver(agent, recipient="x@nowhere.test")
        self.assertEqual((result.status, result.report), (
            "failure", "Sorry, I couldn't find any host named nowhere.test. (#5.1.2)"))

    async def test_dns_trouble(self):
        """A DNS server failure defers."""
        resolver = FakeResolver(broken={"flaky.test"})
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor, env={},
                               resolver=resolver)
        result = await self.deliver(agent, recipient="x@flaky.test")
        self.assertEqual((result.status, result.report), (
            "deferral", "Sorry, I couldn't find any host by that name. (#4.1.2)"))

    async def test_no_address(self):
        """A domain with neither MX nor A fails permanently."""
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor, env={},
                               resolver=FakeResolver())
        result = await self.deliver(agent, recipient="x@empty.test")
        self.assertEqual((result.status, result.report), (
            "failure", "Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)"))

    async def test_control_smtproutes(self):
        """control/smtproutes routes a domain to the relay's port."""
        server, port = self.serve()
        (self.home.control / "smtproutes").write_text(f"remote.test:127.0.0.1:{port}\n")
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor, env={},
                               resolver=FakeResolver())
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success")
        self.assertEqual(len(server.messages), 1)

    async def test_rcpt_envrules_change_the_route_of_one_recipient(self):
        """rcpt.envrules at delivery time: SMTPROUTE set for one recipient sends
        it to another relay; other recipients keep the service's route."""
        first, first_port = self.serve()
        second, second_port = self.serve()
        (self.home.control / "rcpt.envrules").write_text(
            f"vip@remote.test:SMTPROUTE=:127.0.0.1:{second_port}\n")
        agent = self.agent(f":127.0.0.1:{first_port}")
        plain = await self.deliver(agent, recipient="carol@remote.test")
        vip = await self.deliver(agent, recipient="vip@remote.test")
        self.assertEqual((plain.status, vip.status), ("success", "success"))
        self.assertEqual((len(first.messages), len(second.messages)), (1, 1))
        self.assertIn("RCPT TO:<vip@remote.test>", second.commands)


class SmtpSinkTests(TestCase):
    """Delivery to Postfix's smtp-sink, a real independent SMTP server."""

    def setUp(self):
        self.base = tempfile.mkdtemp()
        os.chmod(self.base, 0o755)
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(os.path.join(self.base, "home"))
        self.dump = os.path.join(self.base, "sink")
        os.makedirs(self.dump)
        os.chmod(self.dump, 0o777)

    async def start_sink(self):
        from indimail.testing import free_port, wait_for
        import socket
        port = free_port()
        args = ["/usr/sbin/smtp-sink", "-d", os.path.join(self.dump, "%M."),
                f"127.0.0.1:{port}", "10"]
        if os.getuid() == 0:
            args[1:1] = ["-u", "nobody"]
        from twisted.internet import protocol
        ended = defer.Deferred()

        class Proto(protocol.ProcessProtocol):
            def processEnded(self, reason):
                ended.callback(None)

        process = reactor.spawnProcess(Proto(), args[0], args, env={})

        async def stop():
            process.signalProcess("TERM")
            await ended
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(stop()))

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        await wait_for(reactor, listening, what="smtp-sink to listen")
        return port

    async def test_delivers_to_smtp_sink(self):
        """The message reaches smtp-sink intact (dot-stuffing undone by the peer)."""
        from indimail.testing import wait_for
        port = await self.start_sink()
        queue, msgid = queue_message(self.home, BODY)
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor,
                               env={"SMTPROUTE": f":127.0.0.1:{port}"}, resolver=FakeResolver())
        result = await agent.deliver(queue, msgid, "bob@example.org", "carol@remote.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertIn("127.0.0.1 accepted message - Protocol SMTP.", result.report)
        files = await wait_for(reactor, lambda: os.listdir(self.dump), what="dump file")
        with open(os.path.join(self.dump, files[0]), "rb") as f:
            dumped = f.read()
        self.assertIn(b"X-Rcpt-Args: <carol@remote.test>\n", dumped)
        self.assertIn(b"\nSubject: test\n\n.leading dot\nline two\n", dumped)


class SmtpsTests(TestCase):
    """A route to port 465 speaks TLS from the first byte."""

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home, BODY)

    async def test_implicit_tls_route(self):
        """``:127.0.0.1:465`` style routes use SMTPS; the report says so."""
        import datetime

        from twisted.internet import ssl

        from indimail.config.certs import self_signed_pem
        pem = self_signed_pem("localhost", datetime.datetime.now(datetime.timezone.utc),
                              key_size=2048)
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        server = ScriptedFactory()
        port = reactor.listenSSL(0, server, options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        class Route465(RemoteDelivery):
            async def _connect(self, address, port_number, timeout, tls=False):
                self.tls_requested = tls
                proto = await super()._connect(address, port.getHost().port, timeout, tls)
                self.lost = proto.when_lost()
                return proto

        agent = Route465(self.home, control(self.home), reactor=reactor,
                         env={"SMTPROUTE": ":127.0.0.1:465"}, resolver=FakeResolver())
        server_closed = server.when_closed()
        result = await agent.deliver(self.queue, self.msgid, "bob@example.org",
                                     "carol@remote.test")
        await agent.lost
        await server_closed
        self.assertTrue(agent.tls_requested)
        self.assertEqual(result.status, "success", result.report)
        self.assertIn("accepted message - Protocol SMTPS.", result.report)
        self.assertEqual(len(server.messages), 1)
