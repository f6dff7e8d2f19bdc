"""Todo processing: recipient classification and the files it leaves."""

from __future__ import annotations

import os

from twisted.trial import unittest

from indimail.config.control import ControlFiles
from indimail.queue.todo import Rewriter, TodoError, list_ids, parse_virtualdomains, process_todo

from .helpers import inject, make_queue, tempdir


def rewriter(**kw) -> Rewriter:
    kw.setdefault("locals", frozenset({"localhost", "example.net"}))
    kw.setdefault("envnoathost", "example.net")
    return Rewriter(**kw)


class ClassificationTests(unittest.SynchronousTestCase):

    def test_locals_stay_as_is(self):
        """A domain listed in locals is delivered locally, address unchanged."""
        self.assertEqual(rewriter().rewrite("Bob@Example.NET"), ("local", "Bob@Example.NET"))

    def test_no_at_gets_envnoathost(self):
        """An address without @ gets @envnoathost appended."""
        self.assertEqual(rewriter().rewrite("bob"), ("local", "bob@example.net"))
        self.assertEqual(rewriter(locals=frozenset()).rewrite("bob"),
                         ("remote", "bob@example.net"))

    def test_virtualdomain_domain_form(self):
        """``domain:prepend`` makes ``prepend-address`` a local recipient."""
        vd = parse_virtualdomains(["Example.COM:example.com"])
        self.assertEqual(rewriter(virtualdomains=vd).rewrite("alice@EXAMPLE.com"),
                         ("local", "example.com-alice@EXAMPLE.com"))

    def test_virtualdomain_exact_address_wins(self):
        """``user@domain:prepend`` is looked up before the domain."""
        vd = parse_virtualdomains(["example.com:dom", "alice@example.com:al"])
        rw = rewriter(virtualdomains=vd)
        self.assertEqual(rw.rewrite("alice@example.com"), ("local", "al-alice@example.com"))
        self.assertEqual(rw.rewrite("bob@example.com"), ("local", "dom-bob@example.com"))

    def test_virtualdomain_suffix_and_catchall(self):
        """``.suffix`` matches subdomains (most specific first); ``:prepend``
        catches everything else."""
        vd = parse_virtualdomains([".example.org:org", ".b.example.org:borg", ":all"])
        rw = rewriter(virtualdomains=vd)
        self.assertEqual(rw.rewrite("x@a.example.org"), ("local", "org-x@a.example.org"))
        self.assertEqual(rw.rewrite("x@a.b.example.org"), ("local", "borg-x@a.b.example.org"))
        self.assertEqual(rw.rewrite("x@example.org"), ("local", "all-x@example.org"))
        self.assertEqual(rw.rewrite("x@other.test"), ("local", "all-x@other.test"))

    def test_exception_goes_remote(self):
        """An empty prepend is an exception: the address goes remote even when
        a catch-all exists."""
        vd = parse_virtualdomains(["remote.test:", ":all"])
        self.assertEqual(rewriter(virtualdomains=vd).rewrite("x@remote.test"),
                         ("remote", "x@remote.test"))

    def test_locals_win_over_virtualdomains(self):
        """locals is consulted before virtualdomains."""
        vd = parse_virtualdomains(["example.net:vd"])
        self.assertEqual(rewriter(virtualdomains=vd).rewrite("a@example.net"),
                         ("local", "a@example.net"))

    def test_everything_else_remote(self):
        """An unknown domain is remote."""
        self.assertEqual(rewriter().rewrite("a@far.test"), ("remote", "a@far.test"))

    def test_percenthack(self):
        """percenthack turns ``user%host@relay`` into ``user@host``."""
        rw = rewriter(percenthack=frozenset({"relay.test"}))
        self.assertEqual(rw.rewrite("u%far.test@relay.test"), ("remote", "u@far.test"))

    def test_from_control(self):
        """locals defaults to ``me``; envnoathost too; virtualdomains is read."""
        control_dir = tempdir(self)
        with open(os.path.join(control_dir, "me"), "w") as f:
            f.write("mx.example.net\n")
        with open(os.path.join(control_dir, "virtualdomains"), "w") as f:
            f.write("example.com:example.com\n")
        rw = Rewriter.from_control(ControlFiles(control_dir))
        self.assertEqual(rw.rewrite("root"), ("local", "root@mx.example.net"))
        self.assertEqual(rw.rewrite("a@example.com"), ("local", "example.com-a@example.com"))


class ProcessTodoTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.queue = make_queue(tempdir(self))
        vd = parse_virtualdomains(["example.com:example.com"])
        self.rw = rewriter(virtualdomains=vd)

    def test_files_written_exactly(self):
        """info gets F plus e/h records, local and remote the T records;
        intd and todo are removed."""
        msgid = inject(self.queue, "s@far.test", ["a@example.net", "b@far.test",
                                                  "c@example.com", "d@far2.test"],
                       extra="X-QHPSI: clean\n")
        result = process_todo(self.queue, msgid, self.rw)
        self.assertEqual(self.queue.info(msgid).read_bytes(),
                         b"Fs@far.test\0eX-QHPSI: clean\n\0")
        self.assertEqual(self.queue.local(msgid).read_bytes(),
                         b"Ta@example.net\0Texample.com-c@example.com\0")
        self.assertEqual(self.queue.remote(msgid).read_bytes(), b"Tb@far.test\0Td@far2.test\0")
        self.assertFalse(self.queue.todo(msgid).exists())
        self.assertFalse(self.queue.intd(msgid).exists())
        self.assertTrue(self.queue.mess(msgid).exists())
        self.assertEqual(result.channels(), ["local", "remote"])
        self.assertEqual(result.size, len(b"Subject: x\n\nhi\n"))
        self.assertEqual(oct(self.queue.info(msgid).stat().st_mode & 0o777), "0o600")

    def test_only_channels_with_recipients(self):
        """No remote file when every recipient is local."""
        msgid = inject(self.queue, "", ["a@example.net"])
        process_todo(self.queue, msgid, self.rw)
        self.assertTrue(self.queue.local(msgid).exists())
        self.assertFalse(self.queue.remote(msgid).exists())
        self.assertEqual(self.queue.info(msgid).read_bytes(), b"F\0")

    def test_stale_outputs_replaced(self):
        """A crash after writing info/local but before unlinking todo: the
        todo is processed again and the stale files are replaced."""
        msgid = inject(self.queue, "s@x", ["a@example.net"])
        self.queue.info(msgid).write_bytes(b"Fjunk\0")
        self.queue.local(msgid).write_bytes(b"Dold\0")
        self.queue.remote(msgid).write_bytes(b"Told\0")
        process_todo(self.queue, msgid, self.rw)
        self.assertEqual(self.queue.local(msgid).read_bytes(), b"Ta@example.net\0")
        self.assertFalse(self.queue.remote(msgid).exists())
        self.assertEqual(self.queue.info(msgid).read_bytes(), b"Fs@x\0")

    def test_todo_gone(self):
        """A todo file that vanished is nothing to do."""
        self.assertIsNone(process_todo(self.queue, 4242, self.rw))

    def test_bad_envelope_stays(self):
        """An unknown record type is an error and the todo file stays."""
        msgid = inject(self.queue, "s@x", ["a@example.net"])
        self.queue.todo(msgid).write_bytes(b"u1\0p1\0Fs@x\0Xbad\0")
        self.assertRaises(TodoError, process_todo, self.queue, msgid, self.rw)
        self.assertTrue(self.queue.todo(msgid).exists())

    def test_list_ids(self):
        """Ids in every split sub-directory, sorted."""
        ids = [inject(self.queue, "s@x", ["a@example.net"]) for _ in range(4)]
        self.assertEqual(list_ids(self.queue, "todo"), sorted(ids))
        self.assertEqual(list_ids(self.queue, "info"), [])
