"""Downed-host backoff in RemoteDelivery: addresses that fail are recorded
in the queue's lock/tcpto and skipped for the route's penalty; and
timeoutconnect reaches the connection attempt."""

import os
import random

from twisted.internet import error, reactor, task
from twisted.internet.testing import MemoryReactorClock

from indimail.delivery.remote import RemoteDelivery
from indimail.delivery.tcpto import TcpTimeouts, jitter
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedFactory, ScriptedServerCase

RELAY = "relay.test"


class _Spy(RemoteDelivery):
    """Records the addresses connected to."""

    tried: list

    async def _connect(self, address, *args):
        self.__dict__.setdefault("tried", []).append(address)
        return await super()._connect(address, *args)


class TcptoTests(ScriptedServerCase):
    factory_class = ScriptedFactory

    def setUp(self):
        super().setUp()
        os.makedirs(self.queue.lock_dir, exist_ok=True)
        self.table = TcpTimeouts(self.queue.lock_dir / "tcpto")
        self.clock = task.Clock()
        self.clock.advance(1_000_000)

    def serve_pair(self):
        """A server on 127.0.0.1; nobody listens on 127.0.0.2 (connections
        are refused), and the relay name resolves to 127.0.0.2 first."""
        good, port = self.serve()
        return good, port

    def agent(self, route, seed=7, **env):
        env = dict(env, SMTPROUTE=route)
        return _Spy(self.home, control(self.home), reactor=reactor, env=env,
                    resolver=FakeResolver(addrs={RELAY: ["127.0.0.2", "127.0.0.1"]}),
                    clock=self.clock, rng=random.Random(seed))

    def deliver(self, agent):
        return agent.deliver(self.queue, self.msgid, "bob@example.org", "carol@remote.test")

    async def test_failing_host_skipped(self):
        """Two failures more than max_tolerance apart mark 127.0.0.2 down:
        the third delivery does not connect to it; after penalty + jitter it
        is tried again."""
        good, port = self.serve_pair()
        agent = self.agent(f":{RELAY}:{port}:600:120")
        for _ in range(2):
            result = await self.deliver(agent)
            self.assertEqual(result.status, "success", result.report)
            self.clock.advance(121)
        self.assertEqual(agent.tried, ["127.0.0.2", "127.0.0.1"] * 2)
        [entry] = self.table.entries()
        self.assertEqual((entry.address, entry.errors), ("127.0.0.2", 2))
        agent.tried = []
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success")
        self.assertEqual(agent.tried, ["127.0.0.1"])           # 127.0.0.2 skipped
        self.assertEqual(good.connections, 3)
        self.clock.advance(600 + jitter(random.Random(7)) - 121)
        agent = self.agent(f":{RELAY}:{port}:600:120")
        await self.deliver(agent)
        self.assertEqual(agent.tried, ["127.0.0.2", "127.0.0.1"])  # tried again

    async def test_errors_within_tolerance_count_once(self):
        """Failures closer than max_tolerance seconds count as one, so the
        address is not skipped."""
        good, port = self.serve_pair()
        agent = self.agent(f":{RELAY}:{port}:600:300")
        for _ in range(3):
            await self.deliver(agent)
            self.clock.advance(100)
        self.assertEqual(agent.tried.count("127.0.0.2"), 3)
        self.assertEqual(self.table.entries()[0].errors, 1)

    async def test_penalty_zero_turns_table_off(self):
        """A route penalty of 0 keeps the table untouched."""
        good, port = self.serve_pair()
        agent = self.agent(f":{RELAY}:{port}:0:0")
        for _ in range(3):
            await self.deliver(agent)
            self.clock.advance(500)
        self.assertEqual(agent.tried.count("127.0.0.2"), 3)
        self.assertEqual(self.table.entries(), [])

    async def test_success_clears(self):
        """A connection that succeeds clears the address's record."""
        self.table.record("127.0.0.1", True, 0, 1)
        self.table.record("127.0.0.1", True, 0, 2)
        server, port = self.serve()
        agent = self.agent(f":127.0.0.1:{port}:-1:120")   # -1: skip for 1 s only
        result = await self.deliver(agent)
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(self.table.entries(), [])

    async def test_all_down_defers(self):
        """When every address is down the delivery defers without connecting,
        with qmail-remote's text (no address list)."""
        for when in (1_000_000 - 500, 1_000_000 - 200):
            self.table.record("127.0.0.1", True, 120, when)
        server, port = self.serve()
        result = await self.deliver(self.agent(f":127.0.0.1:{port}"))
        self.assertEqual((result.status, result.report), (
            "deferral", "Sorry, I wasn't able to establish a SMTP connection for 127.0.0.1. "
                        "(#4.4.1)"))
        self.assertEqual(server.connections, 0)

    async def test_greeting_4xx_marks_once(self):
        """An address that answers but greets with 4xx is counted after its
        successful connect cleared it, so (as upstream) it never reaches
        two errors and is never skipped."""
        good, port = self.serve()
        busy, _ = self.serve(interface="127.0.0.2", port=port, greeting="421 busy")
        agent = self.agent(f":{RELAY}:{port}:600:120")
        for _ in range(3):
            result = await self.deliver(agent)
            self.assertEqual(result.status, "success", result.report)
            self.clock.advance(500)
        self.assertEqual(busy.connections, 3)
        self.assertEqual(self.table.entries()[0].errors, 1)

    async def test_greeting_drop_text(self):
        """Dying in the greeting names the tcpto interval, as upstream does."""
        server, port = self.serve(greeting="drop")
        result = await self.deliver(self.agent(f":127.0.0.1:{port}:3600:120"))
        self.assertEqual((result.status, result.report), (
            "deferral", "Connected to 127.0.0.1 but connection died. Will try alternate MX. "
                        "tcpto interval 120 (#4.4.2)"))
        self.assertEqual(self.table.entries()[0].address, "127.0.0.1")


class _ConnectOnly:
    """The real reactor, except that TCP connections go to a memory reactor
    (so a connection attempt can be inspected and made to time out)."""

    def __init__(self, memory):
        self.memory = memory

    def connectTCP(self, *args, **kwargs):
        return self.memory.connectTCP(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(reactor, name)


class ConnectTimeoutTests(ScriptedServerCase):
    factory_class = ScriptedFactory

    async def test_timeoutconnect(self):
        """control/timeoutconnect is the connection attempt's timeout; a
        timed-out attempt defers and marks the address in lock/tcpto."""
        os.makedirs(self.queue.lock_dir, exist_ok=True)
        (self.home.control / "timeoutconnect").write_text("17\n")
        memory = MemoryReactorClock()
        agent = RemoteDelivery(self.home, control(self.home), reactor=_ConnectOnly(memory),
                               env={"SMTPROUTE": ":127.0.0.1:2525"}, resolver=FakeResolver())
        result_d = agent.deliver(self.queue, self.msgid, "bob@example.org", "carol@remote.test")
        from indimail.testing import wait_for
        await wait_for(reactor, lambda: memory.tcpClients)
        host, port, factory, timeout, _bind = memory.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 2525, 17))
        factory.clientConnectionFailed(memory.connectors[0], error.TimeoutError())
        result = await result_d
        self.assertEqual((result.status, result.report), (
            "deferral", "Sorry, I wasn't able to establish a SMTP connection for 127.0.0.1 "
                        "to 127.0.0.1 port 2525 bind IP [0.0.0.0]. (#4.4.1)"))
        [entry] = TcpTimeouts(self.queue.lock_dir / "tcpto").entries()
        self.assertEqual(entry.address, "127.0.0.1")
