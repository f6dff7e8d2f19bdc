"""CHECKRECIPIENT: the recipients extension, the store as a source, penalties
and MAX_RCPT_ERRCOUNT; run against SQLite and MariaDB where the store is used."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import defer, reactor, task, utils
from twisted.trial.unittest import SynchronousTestCase, TestCase

from indimail.config.cdb import write_cdb
from indimail.config.control import ControlFiles
from indimail.config.home import Home
from indimail.plugins.api import Verdict
from indimail.testing import child_env, wait_for
from indimail.vdomain import flags
from indimail.vdomain import recipients as rcpt
from indimail.vdomain.recipients import (RecipientCheck, RecipientRules, Rule, parse_rules,
                                         recipient_keys)
from indimail.vdomain.backend import SqliteBackend
from indimail.vdomain.records import VUser
from indimail.vdomain.store import VStore

from tests.integration.vdomain.helpers import mysql_backend, run_sql

PROGRAM = """#!/bin/sh
addr=$(tr '\\000' '\\n' <&3 | head -n 1)
echo "$addr $*" >> "$(dirname "$0")/asked"
case "$addr" in
  prog@example.org|list-@example.org) exit 0 ;;
  crash@example.org) exit 111 ;;
esac
exit 1
"""


def make_home(case) -> Home:
    home = Home(Path(case.mktemp()).absolute())
    (home.path / "control").mkdir(parents=True)
    (home.path / "users").mkdir()
    (home.control / "rcpthosts").write_text("example.org\nexample.net\nlocal.test\n")
    write_cdb(home.users / "recipients.cdb",
              [(b":cdbuser@example.org", b""), (b":list-@example.org", b"")])
    program = home.path / "bin" / "checkrcpt"
    program.parent.mkdir()
    program.write_text(PROGRAM)
    program.chmod(0o755)
    return home


class RuleTests(SynchronousTestCase):
    def test_parse_rules(self):
        """Each line form of control/recipients becomes its rule, in order."""
        rules = parse_rules(["!nocheck.com", "@mydomain.com:users/recipients.cdb",
                             "example.com|ldap_pam ldapserver host", "*:control/ff.cdb",
                             "*|ldap_pam other", "legacy.cdb", "!*"])
        self.assertEqual(rules, [
            Rule("accept", "exact", "nocheck.com"),
            Rule("cdb", "exact", "mydomain.com", "users/recipients.cdb"),
            Rule("program", "domain", "example.com", "ldap_pam ldapserver host"),
            Rule("cdb", "any", "", "control/ff.cdb"),
            Rule("program", "any", "", "ldap_pam other"),
            Rule("cdb", "all", "", "legacy.cdb"),
            Rule("passthrough", "any")])

    def test_scopes(self):
        """@domain matches exactly; a plain domain matches it and its sub-domains."""
        self.assertTrue(Rule("cdb", "exact", "a.com").matches("a.com"))
        self.assertFalse(Rule("cdb", "exact", "a.com").matches("x.a.com"))
        self.assertTrue(Rule("cdb", "domain", "a.com").matches("x.a.com"))
        self.assertTrue(Rule("cdb", "domain", "a.com").matches("a.com"))
        self.assertFalse(Rule("cdb", "domain", "a.com").matches("ba.com"))

    def test_keys(self):
        """fastforward keys: ':address' lower-cased, plus ':local-@domain' for extensions."""
        self.assertEqual(recipient_keys("Bob@Example.ORG"), [b":bob@example.org"])
        self.assertEqual(recipient_keys("list-sub@example.org"),
                         [b":list-sub@example.org", b":list-@example.org"])
        self.assertEqual(recipient_keys("postmaster"), [b":postmaster@localhost"])

    def test_modes(self):
        """CHECKRECIPIENT 1/2/3; empty, odd values and no store mean 3; unset is off."""
        self.assertIsNone(rcpt.check_mode({}, True))
        self.assertEqual(rcpt.check_mode({"CHECKRECIPIENT": "1"}, True), 1)
        self.assertEqual(rcpt.check_mode({"CHECKRECIPIENT": "2"}, True), 2)
        self.assertEqual(rcpt.check_mode({"CHECKRECIPIENT": ""}, True), 3)
        self.assertEqual(rcpt.check_mode({"CHECKRECIPIENT": "1"}, False), 3)
        self.assertEqual(rcpt.max_errcount({}), None)
        self.assertEqual(rcpt.max_errcount({"MAX_RCPT_ERRCOUNT": "2"}), 2)
        self.assertEqual(rcpt.max_errcount({"MAX_RCPT_ERRCOUNT": "x"}), 1)


class RecipientRulesTests(TestCase):
    timeout = 60

    def setUp(self):
        self.home = make_home(self)
        self.rules = RecipientRules(ControlFiles(self.home.control), self.home.path, reactor)

    def write(self, *lines):
        (self.home.control / "recipients").write_text("\n".join(lines) + "\n")

    @defer.inlineCallbacks
    def test_no_file(self):
        """Without control/recipients the answer is 'control file missing' (10)."""
        self.assertEqual((yield self.rules.lookup("a@example.org")), rcpt.R_NO_FILE)

    @defer.inlineCallbacks
    def test_cdb_sources(self):
        """An @domain cdb line finds listed addresses and extension keys, relative to the home."""
        self.write("@example.org:users/recipients.cdb")
        self.assertEqual((yield self.rules.lookup("CdbUser@example.org")), rcpt.R_CDB)
        self.assertEqual((yield self.rules.lookup("list-anything@example.org")), rcpt.R_CDB)
        self.assertEqual((yield self.rules.lookup("other@example.org")), rcpt.R_NOT_FOUND)
        self.assertEqual((yield self.rules.lookup("cdbuser@example.net")), rcpt.R_NOT_FOUND)

    @defer.inlineCallbacks
    def test_program_sources(self):
        """A '|' line runs the program with its arguments and address\\0\\0\\0 on fd 3;
        exit 0 finds the address, 111 is a temporary failure."""
        self.write(f"example.org|{self.home.path}/bin/checkrcpt one two")
        self.assertEqual((yield self.rules.lookup("prog@example.org")), rcpt.R_PROGRAM)
        self.assertEqual((yield self.rules.lookup("nobody@example.org")), rcpt.R_NOT_FOUND)
        asked = (self.home.path / "bin" / "asked").read_text().splitlines()
        self.assertEqual(asked, ["prog@example.org one two", "nobody@example.org one two"])
        yield self.assertFailure(self.rules.lookup("crash@example.org"), rcpt.RecipientsTempFail)

    @defer.inlineCallbacks
    def test_wildcards_and_order(self):
        """'!domain' accepts its domain unasked, lines are tried in order, '!*' passes the rest."""
        self.write("!nocheck.com", "@example.org:users/recipients.cdb",
                   "*|bin/checkrcpt", "!*")
        self.assertEqual((yield self.rules.lookup("x@nocheck.com")), rcpt.R_WILDCARD)
        self.assertEqual((yield self.rules.lookup("cdbuser@example.org")), rcpt.R_CDB)
        self.assertEqual((yield self.rules.lookup("prog@example.org")), rcpt.R_PROGRAM)
        self.assertEqual((yield self.rules.lookup("x@elsewhere.com")), rcpt.R_PASSTHROUGH)


def has_result(d: defer.Deferred) -> bool:
    """Whether *d* has its final result (``called`` is already true while
    it waits on a Deferred one of its callbacks returned)."""
    return d.called and not d.paused


class CheckTestsMixin:
    """RecipientCheck over a store; subclasses pick the backend."""

    timeout = 120
    recheck = 0.0     # the service's control files recheck (RecipientCheck.verdict_now's fast path)

    @defer.inlineCallbacks
    def setUp(self):
        self.home = make_home(self)
        self.backend = self.make_backend()
        self.store = VStore(self.backend, create_database=True)
        yield self.store.open()
        self.addCleanup(self.store.close)
        yield self.store.add_domain("example.org")
        yield self.store.add_alias_domain("example.net", "example.org")
        for name, gid, inactive in (("bob", 0, False), ("gone", 0, True),
                                    ("full", flags.BOUNCE_MAIL, False)):
            yield self.store.add_user(VUser(name, "example.org", "x", 1, gid, name,
                                            f"/h/{name}", "NOQUOTA", inactive))
        yield self.store.add_alias_line("info", "example.org", "&bob@example.org")
        self.control = ControlFiles(self.home.control, recheck=self.recheck)
        self.clock = task.Clock()
        self.checker = RecipientCheck(self.control, self.home, self.store, reactor=reactor,
                                      clock=self.clock)

    @defer.inlineCallbacks
    def check(self, env, address, notes=None):
        """Run check(); advance the clock over any penalty once it is pending."""
        d = self.checker.check(env, address, sender="carol@remote.test", notes=notes)
        while not has_result(d):
            yield wait_for(reactor, lambda: has_result(d) or self.clock.getDelayedCalls(),
                           timeout=60, what="check to finish or wait")
            if not has_result(d):
                self.clock.advance(rcpt.PENALTY)
        result = yield d
        return result

    @defer.inlineCallbacks
    def test_mode1_store(self):
        """CHECKRECIPIENT=1: users and valias pass (also at an alias domain); unknown,
        inactive and overquota users get upstream's 550 texts."""
        env = {"CHECKRECIPIENT": "1"}
        for ok in ("bob@example.org", "bob@example.net", "info@example.org"):
            self.assertIs((yield self.check(env, ok)).verdict, Verdict.CONTINUE, ok)
        for address, state in (("nobody@example.org", "is absent on this domain (#5.1.1)"),
                               ("gone@example.org", "is inactive on this domain (#5.2.1)"),
                               ("full@example.org", "is overquota on this domain (#5.2.2)")):
            result = yield self.check(env, address)
            self.assertEqual((result.verdict, result.code, result.text),
                             (Verdict.DENY, 550,
                              f"sorry, carol@remote.test mailbox <{address}> {state}"))

    @defer.inlineCallbacks
    def test_check_awaits_the_store_without_deferred_wrappers(self):
        """Every RCPT pays for each Deferred between the check and the query,
        so check() awaits the coroutines (find) and not their Deferred forms
        (lookup, get_user), which stay for other callers."""
        def wrapper_used(*args, **kwargs):
            raise AssertionError("a Deferred wrapper was used")

        self.patch(VStore, "lookup", wrapper_used)
        self.patch(VStore, "get_user", wrapper_used)
        self.patch(RecipientCheck, "lookup", wrapper_used)
        env = {"CHECKRECIPIENT": "1"}
        self.assertIs((yield self.check(env, "bob@example.net")).verdict, Verdict.CONTINUE)
        self.assertIs((yield self.check(env, "gone@example.org")).verdict, Verdict.DENY)
        verdict = yield defer.ensureDeferred(self.checker.verdict(env, "bob@example.org"))
        self.assertIs(verdict.verdict, Verdict.CONTINUE)

    @defer.inlineCallbacks
    def test_each_domain_is_read_once_per_recipient(self):
        """A miss goes on from where it is (alias domain, then valias): the
        user is not read again for the same domain."""
        reads = []
        real_read = VStore._read_user

        def counted(store, name, domain):
            reads.append((name, domain))
            return real_read(store, name, domain)
        self.patch(VStore, "_read_user", counted)
        env = {"CHECKRECIPIENT": "1"}
        self.assertIs((yield self.check(env, "nobody@example.org")).verdict, Verdict.DENY)
        self.assertEqual(reads, [("nobody", "example.org")])
        del reads[:]
        self.assertIs((yield self.check(env, "bob@example.net")).verdict, Verdict.CONTINUE)
        self.assertEqual(reads, [("bob", "example.net"), ("bob", "example.org")])
        del reads[:]
        self.assertIs((yield self.check(env, "info@example.org")).verdict, Verdict.CONTINUE)
        self.assertEqual(reads, [("info", "example.org")])

    @defer.inlineCallbacks
    def test_lookup_and_find_agree(self):
        """The Deferred forms give what the coroutines give."""
        for address in ("bob@example.org", "bob@example.net", "nobody@example.org"):
            found = yield defer.ensureDeferred(self.store.find(address))
            looked = yield self.store.lookup(address)
            self.assertEqual(found, looked, address)
            self.assertEqual((yield self.checker.lookup(1, address)),
                             (yield defer.ensureDeferred(self.checker.find(1, address))))

    @defer.inlineCallbacks
    def test_unknown_recipient_waits_five_seconds(self):
        """An unknown recipient is answered only after 5 seconds of the injected clock."""
        d = self.checker.check({"CHECKRECIPIENT": "1"}, "nobody@example.org")
        yield wait_for(reactor, lambda: self.clock.getDelayedCalls(), timeout=60,
                       what="the penalty timer")
        self.clock.advance(4.9)
        self.assertFalse(has_result(d))
        self.clock.advance(0.1)
        self.assertEqual((yield d).verdict, Verdict.DENY)

    @defer.inlineCallbacks
    def test_unset_and_remote_and_chkrcptdomains(self):
        """Nothing is checked without CHECKRECIPIENT, for domains outside rcpthosts,
        nor (when chkrcptdomains exists) for domains it does not list."""
        self.assertIs((yield self.check({}, "nobody@example.org")).verdict, Verdict.CONTINUE)
        env = {"CHECKRECIPIENT": "1"}
        self.assertIs((yield self.check(env, "nobody@remote.test")).verdict, Verdict.CONTINUE)
        (self.home.control / "chkrcptdomains").write_text("@example.net\n")
        self.assertIs((yield self.check(env, "nobody@example.org")).verdict, Verdict.CONTINUE)
        self.assertIs((yield self.check(env, "nobody@example.net")).verdict, Verdict.DENY)

    @defer.inlineCallbacks
    def test_mode2_and_mode3(self):
        """2 accepts what the recipients extension or the store knows; 3 only the extension."""
        (self.home.control / "recipients").write_text("@example.org:users/recipients.cdb\n")
        two, three = {"CHECKRECIPIENT": "2"}, {"CHECKRECIPIENT": "3"}
        self.assertIs((yield self.check(two, "cdbuser@example.org")).verdict, Verdict.CONTINUE)
        self.assertIs((yield self.check(two, "bob@example.org")).verdict, Verdict.CONTINUE)
        self.assertIs((yield self.check(two, "nobody@example.org")).verdict, Verdict.DENY)
        self.assertIs((yield self.check(three, "cdbuser@example.org")).verdict,
                      Verdict.CONTINUE)
        self.assertIs((yield self.check(three, "bob@example.org")).verdict, Verdict.DENY)

    @defer.inlineCallbacks
    def test_locals_domain_uses_passwd(self):
        """A domain in control/locals is checked against the system's users."""
        (self.home.control / "locals").write_text("local.test\n")
        env = {"CHECKRECIPIENT": "1"}
        self.assertIs((yield self.check(env, "root@local.test")).verdict, Verdict.CONTINUE)
        self.assertIs((yield self.check(env, "no-such-user-x@local.test")).verdict,
                      Verdict.DENY)

    @defer.inlineCallbacks
    def test_max_rcpt_errcount(self):
        """After MAX_RCPT_ERRCOUNT unknown recipients of a transaction the next RCPT
        gets 421 and the connection is closed; a new transaction starts again."""
        env = {"CHECKRECIPIENT": "1", "MAX_RCPT_ERRCOUNT": "2"}
        notes = {}
        self.assertIs((yield self.check(env, "x1@example.org", notes)).verdict, Verdict.DENY)
        self.assertIs((yield self.check(env, "bob@example.org", notes)).verdict,
                      Verdict.CONTINUE)
        self.assertIs((yield self.check(env, "x2@example.org", notes)).verdict, Verdict.DENY)
        result = yield self.check(env, "bob@example.org", notes)
        self.assertEqual((result.verdict, result.code, result.text),
                         (Verdict.DISCONNECT, 421, "too many invalid addresses, goodbye (#4.7.1)"))
        self.assertIs((yield self.check(env, "bob@example.org", {})).verdict, Verdict.CONTINUE)

    @defer.inlineCallbacks
    def test_store_opened_on_demand(self):
        """The store may be given as an opener; it is asked for on the first lookup."""
        calls = []

        def opener():
            calls.append(1)
            return defer.succeed(self.store)
        self.checker.store = opener
        self.assertIs((yield self.check({"CHECKRECIPIENT": "1"}, "bob@example.org")).verdict,
                      Verdict.CONTINUE)
        self.assertIs((yield self.check({"CHECKRECIPIENT": "1"}, "no@example.org")).verdict,
                      Verdict.DENY)
        self.assertEqual(calls, [1])

    @defer.inlineCallbacks
    def test_database_error_is_temporary(self):
        """A failing database answers 451 temporary database error, never 550."""
        yield defer.maybeDeferred(self.break_store)
        result = yield self.check({"CHECKRECIPIENT": "1"}, "bob@example.org")
        self.assertEqual((result.verdict, result.code),
                         (Verdict.DENYSOFT, 451))
        self.assertEqual(result.text, "Sorry, I got a temporary database error (#4.3.2)")
        self.flushLoggedErrors()

    @defer.inlineCallbacks
    def test_recipients_program_failure_is_temporary(self):
        """A recipients program exiting 111 answers 451 unable to check recipients."""
        (self.home.control / "recipients").write_text("*|bin/checkrcpt\n")
        result = yield self.check({"CHECKRECIPIENT": "3"}, "crash@example.org")
        self.assertEqual((result.verdict, result.code, result.text),
                         (Verdict.DENYSOFT, 451, "unable to check recipients (#4.3.2)"))

    @defer.inlineCallbacks
    def test_test_recipients_command(self):
        """test-recipients -s asks the store, -r the recipients extension, with upstream's words."""
        if isinstance(self.backend, SqliteBackend):   # the store is the home's already
            env = {"INDIMAIL_HOME": str(self.home.path)}
        else:
            b = self.backend
            (self.home.control / "host.mysql").write_text(f"{b.host}:{b.user}::{b.port}\n")
            env = {"INDIMAIL_HOME": str(self.home.path), "MYSQL_DATABASE": b.database,
                   "MYSQL_PASSWD": b.password}
        (self.home.control / "recipients").write_text("!nocheck.com\n"
                                                      "@example.org:users/recipients.cdb\n")

        def run(*args):
            return utils.getProcessOutputAndValue(
                sys.executable, ["-m", "indimail.cli.testrecipients", *args],
                env=child_env(env), reactor=reactor)
        for args, code, text in (
                (("-s", "bob@example.org"), 0, "test-recipients: user found in MySQL"),
                (("-s", "gone@example.org"), 1, "test-recipients: fatal: user is inactive"),
                (("-s", "no@example.org"), 1, "test-recipients: fatal: user not found"),
                (("-r", "cdbuser@example.org"), 0, "test-recipients: user found in cdb"),
                (("-r", "a@nocheck.com"), 0, "test-recipients: user matched through wildcard"),
                (("-r", "no@example.org"), 1, "test-recipients: fatal: user not found"),
                (("bob@example.org",), 100, "test-recipients -r | -s addr")):
            out, err, status = yield run(*args)
            self.assertEqual((status, err.decode().strip()), (code, text), args)


class SqliteCheckTests(CheckTestsMixin, TestCase):
    def make_backend(self):
        return SqliteBackend(str(self.home.path / "domains" / "indimail.db"))

    def break_store(self):
        return self.store._operation("DROP TABLE indimail")


class MysqlCheckTests(CheckTestsMixin, TestCase):
    def make_backend(self):
        return mysql_backend(self)

    def break_store(self):
        run_sql(self.backend, ["DROP TABLE indimail"])


class SqliteServiceCheckTests(SqliteCheckTests):
    """The same behaviour through verdict_now's fast path (a service's
    rechecking control files): a Result at once or one Deferred on the read."""
    recheck = 1e-6


class MysqlServiceCheckTests(MysqlCheckTests):
    recheck = 1e-6
