"""Small writes leave at once on plain TCP and UNIX connections, server or
client end; the transport keeps order otherwise."""

import os
import shutil
import socket
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

from indimail.sendnow import send_now


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
        self.assert_sent_at_once(transport, client, b"250 ok\r\n")

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

    @defer.inlineCallbacks
    def client_transport(self, listen, connect):
        """The client end of a connection to a plain socket server."""
        listener = listen()
        self.addCleanup(listener.close)
        factory = protocol.ClientFactory.forProtocol(Holder)
        factory.connected = defer.Deferred()
        connect(factory, listener)
        client = yield factory.connected    # the kernel's backlog completed it
        self.addCleanup(client.transport.abortConnection)
        listener.settimeout(1)
        peer, _ = listener.accept()
        self.addCleanup(peer.close)
        return client.transport, peer

    def assert_sent_at_once(self, transport, peer, data: bytes = b"\x05\x00\x00\x00\x03ping"):
        """*data* (by default a COM_PING packet) is in the kernel before the reactor turns."""
        send_now(transport, data)
        self.assertNotIn(transport, reactor.getWriters())
        peer.settimeout(1)
        self.assertEqual(peer.recv(100), data)

    @defer.inlineCallbacks
    def test_a_tcp_client_query_leaves_at_once(self):
        transport, peer = yield self.client_transport(
            lambda: socket.create_server(("127.0.0.1", 0)),
            lambda f, s: reactor.connectTCP("127.0.0.1", s.getsockname()[1], f))
        self.assert_sent_at_once(transport, peer)

    @defer.inlineCallbacks
    def test_a_unix_client_query_leaves_at_once(self):
        directory = tempfile.mkdtemp(prefix="sendnow-")   # short: a socket path has a limit
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "db.sock")

        def listen():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            return s
        transport, peer = yield self.client_transport(
            listen, lambda f, s: reactor.connectUNIX(path, f))
        self.assert_sent_at_once(transport, peer)


def deferLater(seconds):
    from twisted.internet import task
    return task.deferLater(reactor, seconds, lambda: None)
