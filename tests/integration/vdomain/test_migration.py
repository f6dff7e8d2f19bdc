"""A MariaDB database that IndiMail created and filled is served as it is."""

from twisted.internet import defer, threads
from twisted.trial.unittest import TestCase

from indimail.vdomain.records import VUser
from indimail.vdomain.store import VStore

from .helpers import mysql_backend, run_sql

# IndiMail's CREATE TABLE statements (indimail.h layouts), as install_tables issues them.
INDIMAIL_TABLES = [
    """create table indimail ( pw_name char(40) not null, pw_domain char(67) not null,
    pw_passwd char(128) not null, pw_uid int, pw_gid int, pw_gecos char(48) not null,
    pw_dir char(156), pw_shell char(30),
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP not null,
    primary key (pw_name, pw_domain), index pw_gecos (pw_gecos(25)), index pw_uid (pw_uid) )""",
    """create table indibak ( pw_name char(40) not null, pw_domain char(67) not null,
    pw_passwd char(128) not null, pw_uid int, pw_gid int, pw_gecos char(48) not null,
    pw_dir char(156), pw_shell char(30),
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP not null,
    primary key (pw_name, pw_domain), index pw_gecos (pw_gecos(25)), index pw_uid (pw_uid) )""",
    """create table relay ( email char(96) not null, ipaddr char(18) not null, timestamp int,
    unique index (email, ipaddr), index(ipaddr), index(timestamp) )""",
    """create table valias ( alias  char(40) not null, domain char(67) not null,
    valias_line char(190) not null,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP NOT NULL,
    unique index(alias, domain, valias_line), index (alias, domain) )""",
    """create table hostcntrl ( pw_name char(40) not null, pw_domain char(67) not null,
    pw_passwd char(128) not null, host char(64) not null,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL, primary key (pw_name, pw_domain) )""",
    """create table aliasdomain ( alias char(64) not null, domain char(67),
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP NOT NULL,
    primary key(alias) )""",
]

# Rows as IndiMail's SMALL_INSERT, valias and relay code write them.
INDIMAIL_ROWS = [
    'insert low_priority into indimail ( pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, '
    'pw_gecos, pw_dir, pw_shell ) values ( "testuser", "indimail.org", '
    '"$1$Ddas01yP$W6lSlgM1Vg8gmD5pz7Tnr/", 1, 0, "Test User", '
    '"/home/mail/T2Zsym/indimail.org/testuser", "NOQUOTA" )',
    'insert low_priority into indibak ( pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, '
    'pw_gecos, pw_dir, pw_shell ) values ( "olduser", "indimail.org", "{SHA512}xx", 1, 0, '
    '"Old User", "/home/mail/A2Mmox/indimail.org/olduser", "5M,100" )',
    'update low_priority indimail set pw_gid = 514 where pw_name = "testuser" '
    'and pw_domain = "indimail.org"',
    'insert low_priority into valias (alias, domain, valias_line) values '
    '("info", "indimail.org", "&testuser@indimail.org")',
    'replace into relay (email, ipaddr, timestamp) values '
    '("testuser@indimail.org", "192.0.2.9", 1700000000)',
    'insert low_priority into aliasdomain (alias, domain) values ("indimail.net", "indimail.org")',
    'insert low_priority into hostcntrl (pw_name, pw_domain, pw_passwd, host) values '
    '("testuser", "indimail.org", "x", "mailstore1")',
]


class MigrationTests(TestCase):
    """The store opens an IndiMail-made MariaDB database without changing its tables."""

    @defer.inlineCallbacks
    def setUp(self):
        self.backend = mysql_backend(self)
        yield threads.deferToThread(
            run_sql, self.backend, [f"CREATE DATABASE {self.backend.database}"],
            with_database=False)
        yield threads.deferToThread(run_sql, self.backend, INDIMAIL_TABLES + INDIMAIL_ROWS)
        self.before = yield threads.deferToThread(self.show_create)
        self.store = VStore(self.backend)
        yield self.store.open()
        self.addCleanup(self.store.close)

    def show_create(self):
        return {t: run_sql(self.backend, [f"SHOW CREATE TABLE {t}"])[0][1]
                for t in ("indimail", "indibak", "relay", "valias", "hostcntrl", "aliasdomain")}

    @defer.inlineCallbacks
    def test_existing_tables_untouched(self):
        """Opening adds IndiMail's missing tables and leaves the existing ones as they were."""
        after = yield threads.deferToThread(self.show_create)
        self.assertEqual(after, self.before)
        tables = yield threads.deferToThread(run_sql, self.backend, ["SHOW TABLES"])
        self.assertIn("vlimits", {t[0] for t in tables})

    @defer.inlineCallbacks
    def test_users_read_back(self):
        """IndiMail's user rows read back field by field, active and inactive."""
        user = yield self.store.get_user("testuser", "indimail.org")
        self.assertEqual(user, VUser("testuser", "indimail.org", "$1$Ddas01yP$W6lSlgM1Vg8gmD5pz7Tnr/",
                                     1, 514, "Test User",
                                     "/home/mail/T2Zsym/indimail.org/testuser", "NOQUOTA"))
        self.assertTrue(user.quota.unlimited)
        old = yield self.store.get_user("olduser", "indimail.org")
        self.assertTrue(old.inactive)
        self.assertEqual(old.quota.size, 5 * 1024 * 1024)
        self.assertEqual([u.pw_name for u in (yield self.store.list_users("indimail.org"))],
                         ["testuser", "olduser"])
        self.assertEqual((yield self.store.list_domains()), ["indimail.org"])

    @defer.inlineCallbacks
    def test_other_tables_served(self):
        """valias, relay, aliasdomain and hostcntrl rows IndiMail wrote are served."""
        self.assertEqual((yield self.store.alias_lines("info", "indimail.org")),
                         ["&testuser@indimail.org"])
        self.assertTrue((yield self.store.relay_allowed("192.0.2.9", 1700000000 + 60)))
        self.assertEqual((yield self.store.real_domain("indimail.net")), "indimail.org")
        self.assertEqual((yield self.store.mailstore("testuser", "indimail.org")), "mailstore1")

    @defer.inlineCallbacks
    def test_store_writes_are_indimail_rows(self):
        """A user the store adds is a row IndiMail's own SELECT reads as expected."""
        yield self.store.add_user(VUser("new", "indimail.org", "pw", 1, 0, "New", "/h/new",
                                        "1048576,10"))
        rows = yield threads.deferToThread(run_sql, self.backend, [
            'select high_priority pw_name, pw_passwd, pw_uid, pw_gid, pw_gecos, pw_dir, pw_shell '
            'from indimail where pw_domain = "indimail.org" and pw_name = "new"'])
        self.assertEqual(rows, (("new", "pw", 1, 0, "New", "/h/new", "1048576,10"),))
