import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from indimail.vdomain import schema

REQUIRED = ("indimail", "indibak", "relay", "hostcntrl", "host_table", "smtp_port", "dbinfo",
            "vlimits", "valias", "vfilter", "lastauth", "userquota", "aliasdomain",
            "mgmtaccess", "vpriv", "ip_alias_map", "atrn_map")


def columns(conn, table):
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


class SchemaTests(SynchronousTestCase):
    def setUp(self):
        self.conn = sqlite3.connect(":memory:")
        self.addCleanup(self.conn.close)
        for table, layout in schema.LAYOUTS.items():
            for statement in schema.sqlite_ddl(table, layout):
                self.conn.execute(statement)

    def test_every_indimail_table_is_defined(self):
        """All tables of reference section 6 have a layout."""
        for table in REQUIRED:
            self.assertIn(table, schema.LAYOUTS)

    def test_user_table_columns(self):
        """indimail and indibak have IndiMail's columns in IndiMail's order."""
        expected = ["pw_name", "pw_domain", "pw_passwd", "pw_uid", "pw_gid", "pw_gecos",
                    "pw_dir", "pw_shell", "timestamp"]
        self.assertEqual(columns(self.conn, "indimail"), expected)
        self.assertEqual(columns(self.conn, "indibak"), expected)

    def test_other_columns(self):
        """relay, valias, lastauth and vlimits keep their upstream column names."""
        self.assertEqual(columns(self.conn, "relay"), ["email", "ipaddr", "timestamp"])
        self.assertEqual(columns(self.conn, "valias"),
                         ["alias", "domain", "valias_line", "timestamp"])
        self.assertEqual(columns(self.conn, "lastauth"),
                         ["user", "domain", "service", "remote_ip", "quota", "gecos", "timestamp"])
        self.assertEqual(columns(self.conn, "vlimits")[:3],
                         ["domain", "domain_expiry", "passwd_expiry"])
        self.assertEqual(len(columns(self.conn, "vlimits")), 27)

    def test_sqlite_keeps_keys(self):
        """The primary key of indimail and the unique index of relay hold in SQLite."""
        self.conn.execute("INSERT INTO indimail (pw_name, pw_domain, pw_passwd, pw_gecos) "
                          "VALUES ('a', 'd', 'x', '')")
        self.assertRaises(sqlite3.IntegrityError, self.conn.execute,
                          "INSERT INTO indimail (pw_name, pw_domain, pw_passwd, pw_gecos) "
                          "VALUES ('a', 'd', 'y', '')")
        self.conn.execute("INSERT INTO relay VALUES ('a@d', '1.2.3.4', 1)")
        self.assertRaises(sqlite3.IntegrityError, self.conn.execute,
                          "INSERT INTO relay VALUES ('a@d', '1.2.3.4', 2)")

    def test_vlimits_defaults(self):
        """vlimits columns default to -1 for counts and 0 for quotas and flags."""
        self.conn.execute("INSERT INTO vlimits (domain) VALUES ('d')")
        row = self.conn.execute("SELECT maxpopaccounts, diskquota, disable_pop FROM vlimits").fetchone()
        self.assertEqual(row, (-1, 0, 0))

    def test_ddl_is_repeatable(self):
        """Running the DDL again changes nothing (tables are created on first use
        only): the columns stay and the rows already there are kept."""
        self.conn.execute("INSERT INTO indimail (pw_name, pw_domain, pw_passwd, pw_gecos) "
                          "VALUES ('a', 'd', 'x', 'kept')")
        before = columns(self.conn, "indimail")
        for statement in schema.sqlite_ddl("indimail", schema.USER_LAYOUT):
            self.conn.execute(statement)
        self.assertEqual(columns(self.conn, "indimail"), before)
        self.assertEqual(self.conn.execute("SELECT pw_gecos FROM indimail").fetchall(),
                         [("kept",)])

    def test_mysql_ddl_is_upstream_text(self):
        """MySQL gets the layout verbatim, with IF NOT EXISTS."""
        [statement] = schema.mysql_ddl("relay", schema.LAYOUTS["relay"])
        self.assertTrue(statement.startswith("CREATE TABLE IF NOT EXISTS relay (email char(96)"))
        self.assertIn("unique index (email, ipaddr)", statement)

    def test_table_names_are_checked(self):
        """A table name that is not a plain identifier never reaches SQL."""
        self.assertRaises(ValueError, schema.check_name, "bad; drop table x")
        self.assertRaises(ValueError, schema.check_name, "a.b")
        self.assertEqual(schema.check_name("badmailfrom"), "badmailfrom")

    def test_split_items_respects_parentheses(self):
        """Commas inside an index column list do not split the item."""
        self.assertEqual(schema.split_items("a int, primary key (a, b), index x (c(25))"),
                         ["a int", "primary key (a, b)", "index x (c(25))"])


class PasswdWidthTests(SynchronousTestCase):
    def test_user_tables_hold_the_longest_scram_form(self):
        """pw_passwd of the tables we create is wider than IndiMail's char(128):
        a vpasswd -C -m SCRAM-SHA-256 form (seed: ~280 characters) fits."""
        from indimail.vdomain.admin import make_password
        stored = make_password("a-rather-long-password!", "SCRAM-SHA-256", cram=True)
        self.assertGreater(len(stored), schema.INDIMAIL_PASSWD_WIDTH)
        self.assertLessEqual(len(stored), schema.PASSWD_WIDTH)
        for table in ("indimail", "indibak"):
            self.assertIn(f"pw_passwd varchar({schema.PASSWD_WIDTH}) not null",
                          schema.LAYOUTS[table])
