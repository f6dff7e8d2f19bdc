"""The listening port the SMTP workers share (:mod:`indimail.smtp.sharedport`):
one accept per reactor turn, and a worker with a less busy peer leaves new
connections to it, taking one itself only when the peer lets it wait."""

from __future__ import annotations

import socket

from twisted.internet import protocol, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from indimail.smtp import sharedport
from indimail.smtp.sharedport import SharedPort, adopt_shared_port


class _Counting(protocol.ServerFactory):
    def __init__(self):
        self.built = 0

    def buildProtocol(self, addr):
        self.built += 1
        return protocol.Protocol()


class SharedPortTests(unittest.TestCase):

    def setUp(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.addCleanup(self.listener.close)
        self.peer_less_busy = False
        self.factory = _Counting()
        self.port = adopt_shared_port(reactor, self.listener.fileno(), socket.AF_INET,
                                      self.factory, lambda: self.peer_less_busy)
        self.port.clock = self.clock = Clock()
        self.addCleanup(lambda: self.port.disconnecting or self.port.stopListening())
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()

    def connect(self, count: int) -> None:
        """*count* connections queued on the listening socket (not yet accepted)."""
        for _ in range(count):
            client = socket.create_connection(self.listener.getsockname(), timeout=5)
            self.clients.append(client)

    def test_a_tcp_socket_gets_a_shared_port(self):
        self.assertIsInstance(self.port, SharedPort)
        self.assertIn(self.port, reactor.getReaders())

    def test_one_connection_per_turn(self):
        """Three queued connections: each doRead accepts one, and the batch
        stays at one after tcp.Port's adaptation."""
        self.connect(3)
        self.port.doRead()
        self.assertEqual(self.factory.built, 1)
        self.assertEqual(self.port.numberAccepts, 1)
        self.port.doRead()
        self.assertEqual(self.factory.built, 2)

    def test_a_less_busy_peer_gets_the_connection_first(self):
        """With a less busy peer the port accepts nothing and stops reading;
        when the connection is still queued after the wait it takes one,
        then defers to the peer again."""
        self.peer_less_busy = True
        self.connect(2)
        self.port.doRead()
        self.assertEqual(self.factory.built, 0)
        self.assertNotIn(self.port, reactor.getReaders())
        self.clock.advance(sharedport.WAIT)
        self.assertIn(self.port, reactor.getReaders())
        self.port.doRead()
        self.assertEqual(self.factory.built, 1)
        self.port.doRead()
        self.assertEqual(self.factory.built, 1)
        self.assertNotIn(self.port, reactor.getReaders())

    def test_nothing_queued_after_the_wait_means_no_free_pass(self):
        """If the peer took the connection meanwhile, the next one is again
        left to a less busy peer."""
        self.peer_less_busy = True
        self.port.doRead()      # a wake-up whose connection the peer took
        self.clock.advance(sharedport.WAIT)
        self.assertIn(self.port, reactor.getReaders())
        self.connect(1)
        self.port.doRead()
        self.assertEqual(self.factory.built, 0)

    def test_stop_listening_while_waiting_cancels_the_wait(self):
        self.peer_less_busy = True
        self.port.doRead()
        waiting = self.port._waiting
        self.assertTrue(waiting.active())
        d = self.port.stopListening()
        self.assertFalse(waiting.active())
        return d
