"""Remote deliveries share idle SMTP connections (conncache) against a real
scripted server on loopback: one connection for a run of messages, QUIT on
expiry and at stop, fresh connections when a cached one went stale."""

from twisted.internet import reactor, task

from indimail.delivery.conncache import ConnectionCache, Key
from indimail.delivery.remote import RemoteDelivery
from indimail.delivery.smtproutes import Route
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedFactory, ScriptedServerCase, ScriptedSMTP

REPORT = ("From: <bob@example.org> RCPT: <carol@remote.test> 127.0.0.1 "
          "accepted message - Protocol SMTP.\nRemote host said: 250 ok queued")


class ClosesAfterFirst(ScriptedSMTP):
    """Closes the connection right after its first message (a peer whose
    idle timeout is shorter than ours)."""

    def _reply(self, stage):
        super()._reply(stage)
        if stage == "dot":
            self.transport.loseConnection()


class RefusesSecondMail(ScriptedSMTP):
    """Answers 421 to a second MAIL on the same connection."""

    def connectionMade(self):
        self.mails = 0
        super().connectionMade()

    def lineReceived(self, line):
        if line.upper().startswith(b"MAIL") and not self.in_data:
            self.mails += 1
            if self.mails == 2:
                self.factory.commands.append(line.decode())
                self.transport.write(b"421 idle too long\r\n")
                self.transport.loseConnection()
                return
        super().lineReceived(line)


class StrayReplyWhileIdle(ScriptedSMTP):
    """Writes an unasked-for reply after its first message, keeps the
    connection open, and refuses the next message at the dot."""

    def _reply(self, stage):
        super()._reply(stage)
        if stage == "dot" and not getattr(self.factory, "strayed", False):
            self.factory.strayed = True   # later, once the client parked the connection
            reactor.callLater(0.02, self.transport.write, b"250 stray\r\n")
            self.factory.replies["dot"] = "554 refused"


class ConnectionCacheTests(ScriptedServerCase):
    factory_class = ScriptedFactory

    def agent(self, port, cache, **env):
        env = dict(env, SMTPROUTE=f":127.0.0.1:{port}")
        return RemoteDelivery(self.home, control(self.home), reactor=reactor, env=env,
                              resolver=FakeResolver(), connection_cache=cache)

    def cache(self, clock=None, **kwargs):
        cache = ConnectionCache(clock or reactor, **kwargs)
        cache.startService()
        self.addCleanup(cache.stopService)
        return cache

    async def deliver_n(self, agent, n, recipient="carol@remote.test"):
        results = []
        for _ in range(n):
            results.append(await agent.deliver(self.queue, self.msgid, "bob@example.org",
                                               recipient))
        return results

    async def test_one_connection_for_a_run_of_messages(self):
        """Three deliveries to one route: one connection, one EHLO, three
        transactions with unchanged reports; QUIT only when the cache stops."""
        server, port = self.serve()
        cache = self.cache()
        results = await self.deliver_n(self.agent(port, cache), 3)
        self.assertEqual([(r.status, r.report) for r in results], [("success", REPORT)] * 3)
        self.assertEqual(server.connections, 1)
        self.assertEqual(len(server.messages), 3)
        verbs = [c.split()[0].split(":")[0] for c in server.commands]
        self.assertEqual(verbs, ["EHLO"] + ["MAIL", "RCPT", "DATA"] * 3)
        self.assertEqual(len(cache), 1)
        closed = server.when_closed()
        cache.stopService()
        await closed
        self.assertEqual(server.commands[-1], "QUIT")
        self.assertEqual(len(cache), 0)

    async def test_no_cache_one_connection_per_message(self):
        """Without a cache (qmail-remote's way) each message has its own
        connection, ended by QUIT."""
        server, port = self.serve()
        results = await self.deliver_n(self.agent(port, None), 2)
        await server.all_closed()
        self.assertEqual([r.status for r in results], ["success"] * 2)
        self.assertEqual(server.connections, 2)
        self.assertEqual(server.commands.count("QUIT"), 2)

    async def test_idle_connection_expires_with_quit(self):
        """After the idle time the cached connection gets QUIT and closes;
        the next delivery connects afresh."""
        server, port = self.serve()
        clock = task.Clock()
        cache = self.cache(clock, idle_time=2.0)
        agent = self.agent(port, cache)
        await self.deliver_n(agent, 1)
        clock.advance(1.9)
        self.assertEqual(len(cache), 1)
        closed = server.when_closed()
        clock.advance(0.2)
        await closed
        self.assertEqual(server.commands[-1], "QUIT")
        self.assertEqual(len(cache), 0)
        [result] = await self.deliver_n(agent, 1)
        self.assertEqual(result.status, "success")
        self.assertEqual(server.connections, 2)

    async def test_reuse_time_limits_a_connections_life(self):
        """A connection whose first transaction is older than the reuse time
        is not kept: it gets QUIT after the delivery that found it old."""
        server, port = self.serve()
        clock = task.Clock()
        cache = self.cache(clock, idle_time=100.0, reuse_time=10.0)
        agent = self.agent(port, cache)
        await self.deliver_n(agent, 1)
        clock.advance(11)
        closed = server.when_closed()
        await self.deliver_n(agent, 1)
        await closed
        self.assertEqual(server.connections, 1)
        self.assertIn("QUIT", server.commands)
        self.assertEqual(len(cache), 0)

    async def test_peer_closed_idle_connection(self):
        """A cached connection the peer closed leaves the cache; the next
        message goes over a new connection."""
        server, port = self.serve()
        server.protocol = ClosesAfterFirst
        cache = self.cache()
        agent = self.agent(port, cache)
        closed = server.when_closed()
        await self.deliver_n(agent, 1)
        await closed
        [result] = await self.deliver_n(agent, 1)
        self.assertEqual((result.status, result.report), ("success", REPORT))
        self.assertEqual(server.connections, 2)

    async def test_stale_connection_is_replaced(self):
        """A cached connection answering 421 to MAIL (its idle timeout) is
        dropped and the same delivery succeeds over a fresh connection."""
        server, port = self.serve()
        server.protocol = RefusesSecondMail
        cache = self.cache()
        agent = self.agent(port, cache)
        results = await self.deliver_n(agent, 2)
        self.assertEqual([(r.status, r.report) for r in results], [("success", REPORT)] * 2)
        self.assertEqual(server.connections, 2)
        self.assertEqual(len(server.messages), 2)

    async def test_connection_written_to_while_idle_is_not_reused(self):
        """A peer that wrote while the connection was idle would answer the
        next MAIL with that text and every later command out of step (a
        refused message read as accepted): the cache drops it and the
        delivery connects afresh, where the refusal is seen."""
        server, port = self.serve()
        server.protocol = StrayReplyWhileIdle
        agent = self.agent(port, self.cache())
        [first] = await self.deliver_n(agent, 1)
        self.assertEqual(first.status, "success")
        await task.deferLater(reactor, 0.1, lambda: None)   # the stray reply arrives
        [second] = await self.deliver_n(agent, 1)
        self.assertEqual(second.status, "failure", second.report)
        self.assertIn("554 refused", second.report)
        self.assertEqual(server.connections, 2)

    async def test_rejection_ends_the_connection(self):
        """A refused recipient on a cached connection is reported as
        usual; that connection gets QUIT and is not kept."""
        server, port = self.serve()
        cache = self.cache()
        agent = self.agent(port, cache)
        await self.deliver_n(agent, 1)
        server.replies["rcpt"] = "550 no such user"
        closed = server.when_closed()
        [result] = await self.deliver_n(agent, 1)
        await closed
        self.assertEqual(result.status, "failure")
        self.assertIn("does not like recipient", result.report)
        self.assertEqual(server.commands[-1], "QUIT")
        self.assertEqual(len(cache), 0)
        self.assertEqual(server.connections, 1)

    async def test_stopped_cache_keeps_nothing(self):
        """Once the cache stopped (the send service is stopping), a finished
        delivery says QUIT instead of parking its connection."""
        server, port = self.serve()
        cache = self.cache()
        cache.stopService()
        closed = server.when_closed()
        await self.deliver_n(self.agent(port, cache), 1)
        await closed
        self.assertEqual(server.commands[-1], "QUIT")
        self.assertEqual(len(cache), 0)


class KeyTests(ScriptedServerCase):
    factory_class = ScriptedFactory

    def test_credentials_and_helo_separate_connections(self):
        """Connections are shared only by deliveries that would open them
        the same way: another AUTH user or HELO name gets its own."""
        from indimail.delivery.mx import MXAddress
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor, env={})
        settings = agent.settings("remote.test", "bob@example.org")
        target = MXAddress(0, "relay.example", "127.0.0.1")
        key = agent._cache_key(target, 25, settings, False, None)
        self.assertEqual(key, agent._cache_key(target, 25, settings, False, None))
        routed = settings.__class__(**{**settings.__dict__, "route": Route(
            "relay.example", user="u", password="p"), "auth": ""})
        other = settings.__class__(**{**settings.__dict__, "route": Route(
            "relay.example", user="u", password="q"), "auth": ""})
        self.assertNotEqual(agent._cache_key(target, 25, routed, False, None),
                            agent._cache_key(target, 25, other, False, None))
        for env in ({"SECURE_AUTH": ""}, {"DISABLE_AUTH_LOGIN": ""}):
            restricted = RemoteDelivery(self.home, control(self.home), reactor=reactor, env=env)
            self.assertNotEqual(key, restricted._cache_key(target, 25, settings, False, None),
                                env)
        renamed = settings.__class__(**{**settings.__dict__, "helo": "other.example"})
        self.assertNotEqual(key, agent._cache_key(target, 25, renamed, False, None))
        self.assertNotEqual(key, agent._cache_key(target, 587, settings, False, None))
        self.assertIsInstance(key, Key)

    def test_from_env(self):
        """REMOTE_CACHE_TIME 0 turns caching off; a bad number names the
        variable."""
        self.assertIsNone(ConnectionCache.from_env({"REMOTE_CACHE_TIME": "0"}, reactor))
        cache = ConnectionCache.from_env({"REMOTE_REUSE_TIME": "60"}, reactor)
        self.assertEqual((cache.idle_time, cache.reuse_time), (2.0, 60.0))
        with self.assertRaises(ValueError) as caught:
            ConnectionCache.from_env({"REMOTE_CACHE_TIME": "soon"}, reactor)
        self.assertIn("REMOTE_CACHE_TIME", str(caught.exception))
