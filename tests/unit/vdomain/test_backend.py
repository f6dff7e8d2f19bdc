from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFileError
from indimail.config.home import Home
from indimail.vdomain.backend import (McdEntry, MysqlBackend, SqliteBackend,
                                      backend_for_home, format_mcdinfo, mcd_entries_for,
                                      parse_host_mysql, parse_mcdinfo)


class HostMysqlTests(SynchronousTestCase):
    def test_port_form(self):
        """host:user:pass:port names a TCP server."""
        b = parse_host_mysql("db.example.com:indimail:secret:3307")
        self.assertEqual((b.host, b.user, b.password, b.port, b.socket, b.ssl),
                         ("db.example.com", "indimail", "secret", 3307, None, False))
        self.assertEqual(b.connect_kwargs()["port"], 3307)

    def test_socket_form_and_ssl(self):
        """A fourth field starting with / is a socket; a fifth field ssl turns TLS on."""
        b = parse_host_mysql("localhost:indimail:ssh-1.5-:/var/run/mysqld/mysqld.sock:ssl")
        self.assertEqual(b.socket, "/var/run/mysqld/mysqld.sock")
        self.assertTrue(b.ssl)
        kwargs = b.connect_kwargs()
        self.assertEqual(kwargs["unix_socket"], "/var/run/mysqld/mysqld.sock")
        self.assertNotIn("host", kwargs)
        self.assertTrue(kwargs["ssl"])
        self.assertNotIn("ssl_disabled", kwargs)
        self.assertTrue(parse_host_mysql("h:u:p:3306:nossl").connect_kwargs()["ssl_disabled"])

    def test_defaults(self):
        """A bare host gets IndiMail's default user, password, port and database."""
        b = parse_host_mysql("localhost")
        self.assertEqual((b.user, b.password, b.port, b.database),
                         ("indimail", "ssh-1.5-", 3306, "indimail"))
        self.assertFalse(parse_host_mysql("h:u:p:3306:nossl").ssl)

    def test_environment_fills_empty_fields(self):
        """MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWD, MYSQL_VPORT and MYSQL_SOCKET fill gaps."""
        env = {"MYSQL_DATABASE": "mail", "MYSQL_USER": "u", "MYSQL_PASSWD": "p",
               "MYSQL_VPORT": "3310"}
        b = parse_host_mysql("h", env)
        self.assertEqual((b.database, b.user, b.password, b.port), ("mail", "u", "p", 3310))
        self.assertEqual(parse_host_mysql("h:x:y", {"MYSQL_SOCKET": "/s"}).socket, "/s")
        self.assertEqual(parse_host_mysql("h:x:y:./rel.sock").socket, "./rel.sock")

    def test_bad_port(self):
        """A port that is not a number is a control file error naming the file."""
        with self.assertRaises(ControlFileError) as cm:
            parse_host_mysql("h:u:p:port", path="/x/host.mysql")
        self.assertIn("/x/host.mysql", str(cm.exception))

    def test_backend_for_home(self):
        """Without host.mysql the store is SQLite in domains/; with it, MySQL."""
        home = Home(Path(self.mktemp()))
        home.control.mkdir(parents=True)
        b = backend_for_home(home)
        self.assertIsInstance(b, SqliteBackend)
        self.assertEqual(Path(b.path), home.domains / "indimail.db")
        (home.control / "host.mysql").write_text("127.0.0.1:root::3306\n")
        b = backend_for_home(home)
        self.assertIsInstance(b, MysqlBackend)
        self.assertEqual((b.host, b.user, b.password), ("127.0.0.1", "root", "ssh-1.5-"))
        b = backend_for_home(home, {"MYSQL_HOST": "db:me:pw:3307"})
        self.assertEqual((b.host, b.user, b.password, b.port), ("db", "me", "pw", 3307))


class McdinfoTests(SynchronousTestCase):
    TEXT = """\
# written by dbinfo
domain   example.com 1
server   10.0.0.1
mdahost  10.0.0.11
port     3306
use_ssl  1
database indimail
user     indimail
pass     ssh-1.5-

domain   example.org 0
server   /var/run/mysqld/mysqld.sock
mdahost  10.0.0.12
port     0
use_ssl  0
database mail   # another database
user     mailuser
pass     secret
"""

    def test_records(self):
        """Each record gives domain, distributed flag, server, mdahost, port, ssl and login."""
        a, b = parse_mcdinfo(self.TEXT)
        self.assertEqual(a, McdEntry("example.com", 1, "10.0.0.1", "10.0.0.11", 3306, True,
                                     "indimail", "indimail", "ssh-1.5-"))
        self.assertEqual(b, McdEntry("example.org", 0, "/var/run/mysqld/mysqld.sock",
                                     "10.0.0.12", 0, False, "mail", "mailuser", "secret"))
        self.assertEqual(a.backend().host, "10.0.0.1")
        self.assertTrue(a.backend().ssl)
        self.assertEqual(b.backend().socket, "/var/run/mysqld/mysqld.sock")
        self.assertEqual((b.backend().database, b.backend().port), ("mail", 3306))

    def test_round_trip(self):
        """format_mcdinfo writes upstream's layout, which parses back to the same records."""
        entries = parse_mcdinfo(self.TEXT)
        text = format_mcdinfo(entries)
        self.assertTrue(text.startswith("domain   example.com 1\nserver   10.0.0.1\n"))
        self.assertEqual(parse_mcdinfo(text), entries)

    def test_record_without_domain(self):
        """A record with no domain line belongs to 'unknown domain', distributed -1."""
        [e] = parse_mcdinfo("server s\nmdahost m\nport 1\nuse_ssl 0\ndatabase d\n"
                            "user u\npass p\n")
        self.assertEqual((e.domain, e.distributed), ("unknown domain", -1))

    def test_incomplete_record(self):
        """A record cut short (next server or end of file) is an error."""
        with self.assertRaises(ControlFileError) as cm:
            parse_mcdinfo("domain x\nserver a\nport 3306\nserver b\n")
        self.assertEqual(cm.exception.lineno, 4)
        self.assertRaises(ControlFileError, parse_mcdinfo, "server a\nport 3306\n")

    def test_bad_lines(self):
        """An unknown key or a key without value is an error naming the line."""
        with self.assertRaises(ControlFileError) as cm:
            parse_mcdinfo("server a\ncolour blue\n")
        self.assertEqual(cm.exception.lineno, 2)
        self.assertRaises(ControlFileError, parse_mcdinfo, "server\n")


class EmptyPasswordTests(SynchronousTestCase):
    def test_empty_password_field_means_default(self):
        """An empty password field is IndiMail's default, unless MYSQL_PASSWD is set (even empty)."""
        self.assertEqual(parse_host_mysql("h:root::3306").password, "ssh-1.5-")
        self.assertEqual(parse_host_mysql("h:root::3306", {"MYSQL_PASSWD": ""}).password, "")


class McdSelectTests(SynchronousTestCase):
    def test_entries_for_domain(self):
        """A distributed domain has one record per mail store; lookup ignores case."""
        record = ("domain {d} 1\nserver {s}\nmdahost {s}\nport 3306\nuse_ssl 0\n"
                  "database indimail\nuser indimail\npass x\n\n")
        text = "".join(record.format(d=d, s=s) for d, s in
                       (("a.test", "db1"), ("b.test", "db2"), ("a.test", "db3")))
        entries = parse_mcdinfo(text)
        self.assertEqual([e.server for e in mcd_entries_for(entries, "A.test")], ["db1", "db3"])
        self.assertEqual(mcd_entries_for(entries, "c.test"), [])
