from twisted.trial.unittest import SynchronousTestCase

from indimail.queue.envelope import (Envelope, EnvelopeError, Info,
                                     parse_recipients, recipient_bytes)


class EnvelopeTests(SynchronousTestCase):
    def test_todo_bytes_golden(self):
        """The intd/todo file is u, p, F, T... records, each NUL-ended (seed example)."""
        env = Envelope("tuser@example.com", ["user1@a.com", "user2@b.com"], uid=1011, pid=28966)
        self.assertEqual(env.todo_bytes(),
                         b"u1011\0p28966\0Ftuser@example.com\0Tuser1@a.com\0Tuser2@b.com\0")

    def test_extra_records(self):
        """e (queue extra headers) and h (envheaders) records follow the recipients."""
        env = Envelope("", ["a@b"], uid=1, pid=2, extra_headers="X-QHPSI: clean\n",
                       env_headers="X-Foo: bar\n")
        data = env.todo_bytes()
        self.assertEqual(data, b"u1\0p2\0F\0Ta@b\0eX-QHPSI: clean\n\0hX-Foo: bar\n\0")
        self.assertEqual(Envelope.from_todo(data), env)
        self.assertEqual(env.info_bytes(), b"F\0eX-QHPSI: clean\n\0hX-Foo: bar\n\0")

    def test_roundtrip(self):
        """from_todo reads back what todo_bytes wrote."""
        env = Envelope("s@x", ["r1@y", "r2@z"], uid=5, pid=6)
        self.assertEqual(Envelope.from_todo(env.todo_bytes()), env)

    def test_unknown_record_rejected(self):
        """An unknown record type is an error."""
        with self.assertRaises(EnvelopeError):
            Envelope.from_todo(b"u1\0p2\0Fs@x\0Xjunk\0")

    def test_unterminated_rejected(self):
        """A record not ended by NUL is an error."""
        with self.assertRaises(EnvelopeError):
            Envelope.from_todo(b"u1\0p2\0Fs@x")

    def test_info(self):
        """info/ holds the sender record."""
        self.assertEqual(Info.parse(b"Fs@x\0").sender, "s@x")

    def test_recipient_offsets(self):
        """Each T/D record carries its byte offset for in-place done marking."""
        data = recipient_bytes(["a@x", "bb@y"])
        self.assertEqual(data, b"Ta@x\0Tbb@y\0")
        marked = data[:5] + b"D" + data[6:]
        recs = parse_recipients(marked)
        self.assertEqual([(r.offset, r.address, r.done) for r in recs],
                         [(0, "a@x", False), (5, "bb@y", True)])
