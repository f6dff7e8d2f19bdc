"""The MySQL wire client's packet handling, fed by hand (no server)."""

import struct

from pymysql import _auth, converters
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from indimail.vdomain import mysqlwire as mw


def packet(payload: bytes, seq: int) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def greeting(plugin: bytes = b"mysql_native_password", salt: bytes = b"abcdefgh" + b"ijklmnopqrst"):
    caps = mw.CLIENT_PROTOCOL_41 | mw.CLIENT_SECURE_CONNECTION | mw.CLIENT_PLUGIN_AUTH
    return (b"\x0a" + b"10.11.0-MariaDB\0" + struct.pack("<I", 7) + salt[:8] + b"\0"
            + struct.pack("<H", caps & 0xFFFF) + b"\x2d" + struct.pack("<H", 2)
            + struct.pack("<H", caps >> 16) + bytes([len(salt) + 1]) + b"\0" * 10
            + salt[8:] + b"\0" + plugin + b"\0")


def connected(password="pw"):
    proto = mw.MysqlWireProtocol("u", password, "db")
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


class ScrambleTests(unittest.TestCase):

    def test_native_scramble_agrees_with_pymysql(self):
        salt = b"0123456789abcdefghij"
        self.assertEqual(mw.scramble_native(b"secret", salt),
                         _auth.scramble_native_password(b"secret", salt))

    def test_sha2_scramble_agrees_with_pymysql(self):
        salt = b"0123456789abcdefghij"
        self.assertEqual(mw.scramble_sha2(b"secret", salt),
                         _auth.scramble_caching_sha2(b"secret", salt))

    def test_empty_password_sends_nothing(self):
        self.assertEqual(mw.scramble_native(b"", b"x" * 20), b"")


class PacketTests(unittest.TestCase):

    def test_length_encoded_integers(self):
        self.assertEqual(mw.lenenc_int(b"\xfa", 0), (250, 1))
        self.assertEqual(mw.lenenc_int(b"\xfb", 0), (None, 1))
        self.assertEqual(mw.lenenc_int(b"\xfc\x01\x02", 0), (0x0201, 3))
        self.assertEqual(mw.lenenc_int(b"\xfd\x01\x02\x03", 0), (0x030201, 4))
        self.assertEqual(mw.lenenc_int(b"\xfe" + struct.pack("<Q", 2**40), 0), (2**40, 9))

    def test_row_with_null(self):
        self.assertEqual(mw.parse_row(b"\x02ab\xfb\x00", 3), ("ab", None, ""))

    def test_row_with_long_values(self):
        """Values of 251 bytes and more carry a longer length prefix."""
        long, longer = "x" * 300, "é" * 40000
        data = (b"\xfc" + struct.pack("<H", 300) + long.encode() + b"\x01a"
                + b"\xfd" + len(longer.encode()).to_bytes(3, "little") + longer.encode())
        self.assertEqual(mw.parse_row(data, 3), (long, "a", longer))

    def test_row_lengths_at_the_one_byte_limit(self):
        """250 bytes take one length byte; 251 the 0xFC form."""
        a, b = "a" * 250, "b" * 251
        data = b"\xfa" + a.encode() + b"\xfc" + struct.pack("<H", 251) + b.encode()
        self.assertEqual(mw.parse_row(data, 2), (a, b))

    def test_literals_agree_with_pymysql(self):
        """Quoting in both escaping modes gives PyMySQL's literals."""
        for text in ("alice", "", "o'neil", 'say "hi"', "back\\slash", "nul\0byte",
                     "line\nbreak\r", "ctrl\x1az", "ünïcode@example.com"):
            self.assertEqual(mw.quote(text), "'" + converters.escape_string(text) + "'")
            self.assertEqual(mw.quote(text, True), "'" + text.replace("'", "''") + "'")

    def test_handshake_answers_with_the_scramble_of_the_full_salt(self):
        proto, transport = connected()
        proto.dataReceived(packet(greeting(), 0))
        sent = transport.value()
        self.assertEqual(sent[3], 1)             # the answer's sequence number
        scramble = mw.scramble_native(b"pw", b"abcdefghijklmnopqrst")
        self.assertIn(bytes([20]) + scramble, sent)
        self.assertTrue(sent.endswith(b"db\0mysql_native_password\0"))

    def test_auth_switch_to_an_unknown_plugin_is_unsupported(self):
        proto, transport = connected()
        proto.dataReceived(packet(greeting(), 0))
        proto.dataReceived(packet(b"\xfeclient_ed25519\0" + b"n" * 32, 2))
        failure = self.failureResultOf(proto.ready, mw.WireUnsupported)
        self.assertIn("client_ed25519", str(failure.value))
        self.assertTrue(transport.disconnecting)

    def test_auth_switch_to_native_sends_the_new_scramble(self):
        proto, transport = connected()
        proto.dataReceived(packet(greeting(b"caching_sha2_password"), 0))
        transport.clear()
        proto.dataReceived(packet(b"\xfemysql_native_password\0" + b"S" * 20 + b"\0", 2))
        self.assertEqual(transport.value(), packet(mw.scramble_native(b"pw", b"S" * 20), 3))
        proto.dataReceived(packet(b"\x00\x00\x00\x02\x00\x00\x00", 4))
        self.assertIs(self.successResultOf(proto.ready), proto)

    def test_full_caching_sha2_exchange_is_unsupported(self):
        proto, _ = connected()
        proto.dataReceived(packet(greeting(b"caching_sha2_password"), 0))
        proto.dataReceived(packet(b"\x01\x04", 2))
        self.failureResultOf(proto.ready, mw.WireUnsupported)

    def test_result_set_split_over_reads_and_long_packets(self):
        proto, transport = connected()
        proto.dataReceived(packet(greeting(), 0))
        proto.dataReceived(packet(b"\x00\x00\x00\x02\x00\x00\x00", 2))
        d = proto.query("SELECT x")
        big = b"x" * (mw.MAX_PACKET + 10)
        row = b"\xfe" + struct.pack("<Q", len(big)) + big
        stream = (packet(b"\x01", 1) + packet(b"coldef", 2) + packet(b"\xfe\0\0\x02\0", 3)
                  + packet(row[:mw.MAX_PACKET], 4) + packet(row[mw.MAX_PACKET:], 5)
                  + packet(b"\xfe\0\0\x02\0", 6))
        for i in range(0, len(stream), 65536):
            proto.dataReceived(stream[i:i + 65536])
        self.assertEqual(self.successResultOf(d), [(big.decode(),)])

    def test_unsupported_server_turns_the_reads_off(self):
        from twisted.internet import defer, task
        from indimail.vdomain.backend import MysqlBackend

        reads = mw.WireReads(MysqlBackend("127.0.0.1", "u", "pw", 3306, None, False, "db"),
                             task.Clock())
        proto, _ = connected()

        class Endpoint:
            def connect(self, factory):
                return defer.succeed(proto)
        reads._endpoint = Endpoint
        d = reads.query("SELECT 1")
        proto.dataReceived(packet(greeting(), 0))
        proto.dataReceived(packet(b"\xfeauth_gssapi_client\0x\0", 2))
        self.failureResultOf(d, mw.WireUnsupported)
        self.assertFalse(reads.usable)
