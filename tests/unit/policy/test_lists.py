"""indimail.policy.lists: control-file lists in text and cdb form, pattern
files and upstream's address_match() rules (the MySQL form is tested
against MariaDB in tests/integration/policy/test_lists_sql.py)."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from indimail.config.cdb import make_control_cdb
from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.policy.lists import (AddressList, ControlList, ListError, PatternList, SqlConfig,
                                   address_keys, regex_lines, wildmat_lines)

from .support import write_control

EARTHLINK = "*@earthlink.net\n!fred@earthlink.net\n[0-9][0-9][0-9][0-9][0-9]@[0-9][0-9][0-9].com\n"


class ListsTest(TestCase):

    def control(self, files: dict) -> ControlFiles:
        path = self.mktemp()
        os.makedirs(path)
        write_control(path, files)
        return ControlFiles(path)

    async def test_text_list_ignores_comments_and_case(self):
        """A text list skips comments and blank lines and matches keys in any case."""
        control = self.control({"badmailfrom": "# spammers\n\nSpam@Example.NET  \n@junk.example\n"})
        bmf = ControlList(control, "badmailfrom", reactor=reactor)
        self.assertTrue(await bmf.contains("spam@example.net"))
        self.assertTrue(await bmf.contains("nobody@x", "@JUNK.example"))
        self.assertFalse(await bmf.contains("# spammers"))
        self.assertFalse(await bmf.contains(""))
        self.assertFalse(await bmf.contains("other@example.net"))

    async def test_missing_list_matches_nothing(self):
        """No file in any form: nothing is listed and the list does not exist."""
        bmf = ControlList(self.control({}), "badmailfrom", reactor=reactor)
        self.assertFalse(await bmf.contains("a@b"))
        self.assertFalse(await bmf.exists())

    async def test_cdb_form_is_searched_before_text(self):
        """Keys of ``name.cdb`` (as qmail-cdb writes them) are found, and the
        text file is still consulted for what the cdb lacks."""
        control = self.control({"badmailfrom": "Big@Example.com\n"})
        make_control_cdb(control.directory, "badmailfrom")
        write_control(str(control.directory), {"badmailfrom": "text@example.com\n"})
        bmf = ControlList(control, "badmailfrom", reactor=reactor)
        self.assertTrue(await bmf.contains("BIG@example.com"))
        self.assertTrue(await bmf.contains("text@example.com"))
        self.assertFalse(await bmf.contains("none@example.com"))

    async def test_list_follows_edits(self):
        """A changed file is re-read on the next lookup."""
        control = self.control({"badrcptto": "a@example.com\n"})
        brt = ControlList(control, "badrcptto", reactor=reactor, check_interval=0)
        self.assertTrue(await brt.contains("a@example.com"))
        write_control(str(control.directory), {"badrcptto": "bb@example.com\n"})
        self.assertFalse(await brt.contains("a@example.com"))
        self.assertTrue(await brt.contains("bb@example.com"))
        os.unlink(control.path("badrcptto"))
        self.assertFalse(await brt.contains("bb@example.com"))

    async def test_files_are_checked_once_per_interval(self):
        """A file is stat'ed at most once per CHECK_INTERVAL: an edit is seen
        only once that much time has passed on the (injected) clock."""
        clock = Clock()

        class TimedReactor:   # the real reactor's threads, the test's time
            seconds = clock.seconds
            getThreadPool = reactor.getThreadPool
            callFromThread = reactor.callFromThread

        control = self.control({"badrcptto": "a@example.com\n"})
        brt = ControlList(control, "badrcptto", reactor=TimedReactor())
        self.assertTrue(await brt.contains("a@example.com"))
        write_control(str(control.directory), {"badrcptto": "bb@example.com\n"})
        clock.advance(0.5)
        self.assertTrue(await brt.contains("a@example.com"))
        clock.advance(0.5)
        self.assertFalse(await brt.contains("a@example.com"))
        self.assertTrue(await brt.contains("bb@example.com"))

    async def test_known_empty_family_answers_without_a_lookup(self):
        """A family whose files were all absent at the last look (within the
        interval) is known empty, so its hooks can answer at once; a file
        made meanwhile is seen once the interval has passed, and a family
        never looked at, or with a file, is not known empty."""
        clock = Clock()

        class TimedReactor:
            seconds = clock.seconds
            getThreadPool = reactor.getThreadPool
            callFromThread = reactor.callFromThread

        control = self.control({})
        family = AddressList(control, "badrcptto", "BADRCPTTO", "badrcptpatterns",
                             "BADRCPTPATTERNS", reactor=TimedReactor())
        env = Environment()
        self.assertFalse(family.known_empty(env))          # never looked at
        self.assertFalse(await family.match("a@example.com", env))
        self.assertTrue(family.known_empty(env))
        self.assertFalse(family.known_empty(env.set(BADRCPTTO="other")))   # another file
        write_control(str(control.directory), {"badrcptpatterns": "a@*\n"})
        clock.advance(0.5)
        self.assertTrue(family.known_empty(env))           # not looked at again yet
        clock.advance(0.5)
        self.assertFalse(family.known_empty(env))          # time to look again
        self.assertTrue(await family.match("a@example.com", env))
        self.assertFalse(family.known_empty(env))

    async def test_known_missing_needs_every_form_absent(self):
        """A list with only its cdb form is not known missing."""
        control = self.control({"badmailfrom": "big@example.com\n"})
        make_control_cdb(control.directory, "badmailfrom")
        os.unlink(control.path("badmailfrom"))
        bmf = ControlList(control, "badmailfrom", reactor=reactor)
        self.assertTrue(await bmf.contains("big@example.com"))
        self.assertFalse(bmf.known_missing())
        empty = ControlList(control, "badrcptto", reactor=reactor)
        self.assertFalse(await empty.contains("big@example.com"))
        self.assertTrue(empty.known_missing())

    def test_wildmat_patterns_with_negation(self):
        """badmailpatterns: ``!`` lines exempt what earlier lines matched (the
        man page's earthlink example)."""
        lines = EARTHLINK.split()
        self.assertTrue(wildmat_lines(lines, "joe@earthlink.net"))
        self.assertFalse(wildmat_lines(lines, "fred@earthlink.net"))
        self.assertTrue(wildmat_lines(lines, "12345@123.com"))
        self.assertFalse(wildmat_lines(lines, "1234@123.com"))

    def test_regex_lines(self):
        """QREGEX lines: unanchored case-insensitive regexes, ``@domain`` means
        ``.*@domain``, a matching ``!`` line refuses at once, bad regexes match nothing."""
        self.assertTrue(regex_lines(["^spam[0-9]+@"], "spam12@x.example"))
        self.assertTrue(regex_lines(["@junk\\.example$"], "a@JUNK.example"))
        self.assertFalse(regex_lines(["!^boss@", "@corp\\.example$"], "boss@corp.example"))
        self.assertTrue(regex_lines(["!^boss@", "@corp\\.example$"], "joe@corp.example"))
        self.assertFalse(regex_lines(["(unclosed"], "(unclosed"))

    async def test_pattern_list(self):
        """PatternList reads a patterns file and matches wildmat (or regex) lines."""
        control = self.control({"badmailpatterns": EARTHLINK})
        bmp = PatternList(control, "badmailpatterns", reactor=reactor)
        self.assertTrue(await bmp.matches("Joe@EarthLink.net"))
        self.assertFalse(await bmp.matches("fred@earthlink.net"))
        self.assertTrue(await bmp.matches("12345@123.com.evil", regex=True))
        self.assertFalse(await bmp.matches("joe@earthlink.net", regex=True))  # "*..." is no regex
        self.assertFalse(await PatternList(self.control({}), "nothing",
                                           reactor=reactor).matches("a@b"))

    def test_address_keys(self):
        """An address is looked up as itself and as ``@domain`` (after the last @)."""
        self.assertEqual(address_keys("Joe@Example.COM"), ["joe@example.com", "@example.com"])
        self.assertEqual(address_keys("a@b@c"), ["a@b@c", "@c"])
        self.assertEqual(address_keys("postmaster"), ["postmaster"])

    async def test_address_list_domains_patterns_and_variables(self):
        """address_match: ``@domain`` lines, the patterns file, and the
        variables naming other files, read from the session's environment."""
        control = self.control({"badmailfrom": "@junk.example\n", "badmailpatterns": EARTHLINK,
                                "other": "x@y.example\n", "otherpatterns": "*@pat.example\n"})
        family = AddressList(control, "badmailfrom", "BADMAILFROM", "badmailpatterns",
                             "BADMAILPATTERNS", reactor=reactor)
        env = Environment()
        self.assertTrue(await family.match("Bob@Junk.Example", env))
        self.assertTrue(await family.match("joe@earthlink.net", env))
        self.assertFalse(await family.match("fred@earthlink.net", env))
        self.assertFalse(await family.match("x@y.example", env))
        moved = env.set(BADMAILFROM="other", BADMAILPATTERNS="otherpatterns")
        self.assertTrue(await family.match("x@y.example", moved))
        self.assertTrue(await family.match("q@pat.example", moved))
        self.assertFalse(await family.match("bob@junk.example", moved))

    async def test_qregex_turns_lists_into_regexes(self):
        """With QREGEX (variable or control file) the list's lines are regexes
        and the wildmat patterns file is not used."""
        control = self.control({"badmailfrom": "^spam[0-9]+@\n",
                                "badmailpatterns": "*@pat.example\n"})
        family = AddressList(control, "badmailfrom", "BADMAILFROM", "badmailpatterns",
                             "BADMAILPATTERNS", reactor=reactor, check_interval=0)
        self.assertFalse(await family.match("spam7@x.example", Environment()))
        self.assertTrue(await family.match("a@pat.example", Environment()))
        on = Environment({"QREGEX": "1"})
        self.assertTrue(await family.match("spam7@x.example", on))
        self.assertFalse(await family.match("a@pat.example", on))
        self.assertFalse(await family.match("spam7@x.example", Environment({"QREGEX": "0"})))
        write_control(str(control.directory), {"qregex": "1\n"})
        self.assertTrue(await family.match("spam7@x.example", Environment()))

    async def test_null_sender_only_meets_patterns(self):
        """The null sender is never an exact key, but a ``*`` pattern matches it (as upstream)."""
        control = self.control({"badmailfrom": "@example.com\n", "badmailpatterns": "*\n"})
        exact = AddressList(control, "badmailfrom", reactor=reactor)
        self.assertFalse(await exact.match("", Environment()))
        both = AddressList(control, "badmailfrom", patterns="badmailpatterns", reactor=reactor)
        self.assertTrue(await both.match("", Environment()))

    def test_sql_config(self):
        """``name.sql``: server:user:password:database:table, optional port,
        a socket path as server; fewer fields or odd table names are refused."""
        config = SqlConfig.parse(b"localhost:indimail:ssh-1.5-:indimail:badmailfrom\n")
        self.assertEqual((config.host, config.user, config.password, config.database,
                          config.table, config.port),
                         ("localhost", "indimail", "ssh-1.5-", "indimail", "badmailfrom", 3306))
        self.assertEqual(SqlConfig.parse(b"127.0.0.1:root::db:t:3307").port, 3307)
        sock = SqlConfig.parse(b"/run/mysqld/mysqld.sock:u:p:d:t").connect_kwargs()
        self.assertEqual(sock["unix_socket"], "/run/mysqld/mysqld.sock")
        self.assertRaises(ListError, SqlConfig.parse, b"localhost:u:p:d\n")
        self.assertRaises(ListError, SqlConfig.parse, b"localhost:u:p:d:bad;drop\n")

    async def test_broken_cdb_is_an_error(self):
        """A truncated cdb is reported (the plugin answers 451), not ignored."""
        control = self.control({"badmailfrom.cdb": b"\x00\x01"})
        with self.assertRaises(ListError):
            await ControlList(control, "badmailfrom", reactor=reactor).contains("a@b")
