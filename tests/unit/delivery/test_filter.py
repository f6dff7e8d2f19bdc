"""Delivery-time filters (FILTERARGS, control filterargs): which filter
applies, what its exit code means, and filtering of local deliveries."""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.environment import Environment
from indimail.delivery.filter import (
    LOCAL, REJECTED, REMOTE, domain_token, filter_command, filter_environment, outcome)
from indimail.delivery.local import LocalDelivery

from .support import MESSAGE, FakeEnqueuer, control, make_home, queue_message, write_dotqmail

ALICE = "example.com-alice@example.com"


class DomainTokenTests(SynchronousTestCase):

    def test_exact_wildmat_and_first_match(self):
        """Exact domain, then wildmat; the first matching line wins."""
        lines = ["example.com:/bin/one", "*.com:/bin/two", "*:/bin/three"]
        self.assertEqual(domain_token(lines, "example.com", LOCAL), "/bin/one")
        self.assertEqual(domain_token(lines, "other.com", LOCAL), "/bin/two")
        self.assertEqual(domain_token(lines, "other.org", REMOTE), "/bin/three")
        self.assertIsNone(domain_token(lines[:2], "other.org", REMOTE))

    def test_channel_directives(self):
        """``domain:local:`` lines apply to local deliveries only,
        ``domain:remote:`` to remote ones; others are skipped over."""
        lines = ["yahoo.com:remote:/usr/bin/dk-filter", "*:local:/bin/cat",
                 "*:remote:/bin/rev"]
        self.assertEqual(domain_token(lines, "yahoo.com", REMOTE), "/usr/bin/dk-filter")
        self.assertEqual(domain_token(lines, "yahoo.com", LOCAL), "/bin/cat")
        self.assertEqual(domain_token(lines, "x.org", REMOTE), "/bin/rev")

    def test_regex(self):
        """With QREGEX the domain is a case-insensitive extended regex."""
        lines = ["^exa.*\\.COM$:/bin/x"]
        self.assertEqual(domain_token(lines, "example.com", LOCAL, regex=True), "/bin/x")
        self.assertIsNone(domain_token(lines, "example.com", LOCAL, regex=False))

    def test_filterargs_variable_wins(self):
        """FILTERARGS is used for every domain, ahead of the control file;
        set but empty means no filter."""
        class Control:
            def lines(self, name):
                return ["*:/bin/from-file"]
        self.assertEqual(filter_command({"FILTERARGS": "/bin/env"}, Control(), "a.b", LOCAL),
                         "/bin/env")
        self.assertEqual(filter_command({}, Control(), "a.b", LOCAL), "/bin/from-file")
        self.assertIsNone(filter_command({"FILTERARGS": ""}, Control(), "a.b", LOCAL))

    def test_outcome(self):
        """0 delivers the output, 2 blackholes, 100 bounces, others defer
        with stderr, a crash defers."""
        self.assertEqual(outcome("f", 0, b"", "/tmp/x").path, "/tmp/x")
        self.assertEqual((outcome("f", 2, b"", "p").status, outcome("f", 2, b"", "p").report),
                         ("success", "blackholed f"))
        self.assertEqual((outcome("f", 100, b"", "p").status, outcome("f", 100, b"", "p").report),
                         ("failure", REJECTED))
        bad = outcome("myfilter", 3, b"no disk\n", "p")
        self.assertEqual((bad.status, bad.report),
                         ("deferral", "myfilter: (spawn-filter) exit code: 3: no disk. (#4.3.0)"))
        self.assertEqual(outcome("f", None, b"", "p").status, "deferral")

    def test_filter_environment(self):
        """The filter sees DOMAIN, _EXT, _QQEH, _SENDER, _RECIPIENT and not
        FILTERARGS/SPAMFILTER."""
        env = filter_environment(Environment({"FILTERARGS": "x", "SPAMFILTER": "y", "A": "1"}),
                                 "example.com", "alice", "X: 1\n", "s@x", "alice@example.com")
        self.assertEqual(env, {"A": "1", "DOMAIN": "example.com", "_EXT": "alice",
                               "_QQEH": "X: 1\n", "_SENDER": "s@x",
                               "_RECIPIENT": "alice@example.com"})


class LocalFilterTests(TestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.home = make_home(self.base)
        self.queue, self.msgid = queue_message(self.home)
        self.tmp = os.path.join(self.base, "tmp")
        os.mkdir(self.tmp)
        self.domain = self.home.domains / "example.com"
        write_dotqmail(self.home, ".qmail-alice", "./alice/Maildir/\n")

    def agent(self, **env):
        base = {"PATH": os.environ.get("PATH", "/bin"), "TMPDIR": self.tmp, **env}
        return LocalDelivery(self.home, control(self.home), FakeEnqueuer(), reactor=reactor,
                             env=base)

    def deliver(self, agent, recipient=ALICE):
        return agent.deliver(self.queue, self.msgid, "bob@example.org", recipient, None)

    def delivered(self):
        new = self.domain / "alice" / "Maildir" / "new"
        return [(new / n).read_bytes() for n in sorted(os.listdir(new))] if new.exists() else []

    async def test_filterargs_variable_rewrites(self):
        """FILTERARGS's stdout is the message that is delivered (after
        qmail-local's own header lines); its temporary file is removed."""
        result = await self.deliver(self.agent(FILTERARGS="sed s/body/BODY/"))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(self.delivered(), [
            b"Return-Path: <bob@example.org>\nDelivered-To: example.com-alice@example.com\n"
            + MESSAGE.replace(b"body", b"BODY")])
        self.assertEqual(os.listdir(self.tmp), [])

    async def test_control_filterargs_local_line(self):
        """A ``domain:local:`` line of control filterargs filters local
        deliveries; a ``:remote:`` line for the domain does not."""
        (self.home.control / "filterargs").write_text(
            "example.com:remote:sed s/body/REMOTE/\nexample.com:local:sed s/body/LOCAL/\n")
        result = await self.deliver(self.agent())
        self.assertEqual(result.status, "success", result.report)
        self.assertIn(b"\nLOCAL\n", self.delivered()[0])

    async def test_filter_environment_seen(self):
        """The filter runs with DOMAIN/_SENDER/_RECIPIENT/_EXT set and
        without FILTERARGS (no loops)."""
        out = os.path.join(self.base, "env.out")
        command = (f'echo "$DOMAIN $_SENDER $_RECIPIENT $_EXT ${{FILTERARGS-none}}" > {out}; '
                   "cat")
        result = await self.deliver(self.agent(FILTERARGS=command))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(open(out).read().strip(),
                         "example.com bob@example.org example.com-alice@example.com alice none")

    async def test_blackhole(self):
        """Exit 2 discards the message: success, nothing delivered."""
        result = await self.deliver(self.agent(FILTERARGS="cat >/dev/null; exit 2"))
        self.assertEqual((result.status, result.report),
                         ("success", "blackholed cat >/dev/null; exit 2"))
        self.assertEqual(self.delivered(), [])
        self.assertEqual(os.listdir(self.tmp), [])

    async def test_reject(self):
        """Exit 100 bounces with spawn-filter's text."""
        result = await self.deliver(self.agent(FILTERARGS="exit 100"))
        self.assertEqual((result.status, result.report), ("failure", "Mail Rejected (#5.7.1)"))
        self.assertEqual(self.delivered(), [])

    async def test_other_exit_defers(self):
        """Any other exit defers, with the filter's stderr in the report."""
        result = await self.deliver(self.agent(FILTERARGS="echo out of luck >&2; exit 7"))
        self.assertEqual((result.status, result.report),
                         ("deferral", "echo out of luck >&2; exit 7: (spawn-filter) exit code: "
                                      "7: out of luck. (#4.3.0)"))
        self.assertEqual(self.delivered(), [])

    async def test_filter_feeds_qmaillocal(self):
        """With QMAILLOCAL set the program gets the filtered message."""
        script = os.path.join(self.base, "ql")
        got = os.path.join(self.base, "got")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\ncat > {got}\n")
        os.chmod(script, 0o755)
        result = await self.deliver(self.agent(FILTERARGS="tr a-z A-Z", QMAILLOCAL=script))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(open(got, "rb").read(), MESSAGE.upper())
