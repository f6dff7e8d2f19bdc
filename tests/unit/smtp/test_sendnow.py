"""Replies leave at once on plain TCP; the transport keeps order otherwise."""

import socket

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

from indimail.smtp.sendnow import send_now


class Holder(protocol.Protocol):
    def connectionMade(self):
        self.factory.connected.callback(self)


class SendNowTests(TestCase):
    @defer.inlineCallbacks
    def connect(self):
        factory = protocol.ServerFactory.forProtocol(Holder)
        factory.connected = defer.Deferred()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)
        server = yield factory.connected
        self.addCleanup(server.transport.abortConnection)
        return server.transport, client

    @defer.inlineCallbacks
    def test_reply_is_in_the_kernel_before_the_reactor_turns(self):
        transport, client = yield self.connect()
        send_now(transport, b"250 ok\r\n")
        self.assertNotIn(transport, reactor.getWriters())
        client.settimeout(1)
        self.assertEqual(client.recv(100), b"250 ok\r\n")

    @defer.inlineCallbacks
    def test_what_the_kernel_does_not_take_follows_in_order(self):
        transport, client = yield self.connect()
        big = bytes(range(256)) * 40000   # far more than a socket buffer
        send_now(transport, big)
        self.assertIn(transport, reactor.getWriters())
        send_now(transport, b"250 after\r\n")   # queued behind, not sent ahead
        expected = big + b"250 after\r\n"
        client.setblocking(False)
        got = bytearray()
        while len(got) < len(expected):
            try:
                got += client.recv(1 << 20)
            except BlockingIOError:
                yield deferLater(0.01)
        self.assertEqual(bytes(got), expected)


def deferLater(seconds):
    from twisted.internet import task
    return task.deferLater(reactor, seconds, lambda: None)
