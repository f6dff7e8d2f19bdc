from twisted.trial.unittest import SynchronousTestCase

from indimail.config.cdb import write_cdb
from indimail.config.home import Home
from indimail.config.showctl import showctl_lines

from .helpers import tempdir


class ShowctlTests(SynchronousTestCase):
    def setUp(self):
        self.home = Home(tempdir(self))
        control = self.home.control
        control.mkdir()
        (control / "me").write_bytes(b"mx.example.com\n")
        (control / "concurrencyremote").write_bytes(b"# comment\n40\n")
        (control / "locals").write_bytes(b"mx.example.com\nlocalhost\n")
        (control / "virtualdomains").write_bytes(b"")
        (control / "smtproutes").write_bytes(b":relay.example.com\n")
        write_cdb(control / "morercpthosts.cdb", [(b"a.org", b""), (b"b.org", b"")])
        (control / "defaultqueue").mkdir()
        (control / "defaultqueue" / "QUEUE_COUNT").write_bytes(b"2\n")
        variables = self.home.variables_for("smtpd")
        variables.mkdir(parents=True)
        (variables / "CHECKRECIPIENT").write_bytes(b"1\n")
        (variables / "MULTI").write_bytes(b"a\0b\n")

    def test_output(self):
        """Existing files show their values, absent main files their defaults, then the service
        environment one VAR=value per line, sorted."""
        lines = showctl_lines(self.home, "smtpd", env={"PATH": "/bin"})
        self.assertEqual(lines[:2], [f"home: {self.home.path}", f"control directory: {self.home.control}"])
        for expected in ("me: mx.example.com",
                         "defaultdomain: mx.example.com (default)",
                         "bouncefrom: MAILER-DAEMON (default)",
                         "concurrencyremote: 40",
                         "concurrencylocal: 10 (default)",
                         "rcpthosts: (none: SMTP accepts mail for any domain)",
                         "virtualdomains: (empty)",
                         "smtproutes: :relay.example.com",
                         "morercpthosts.cdb: cdb, 2 keys",
                         "defaultqueue/:",
                         "  QUEUE_COUNT=2"):
            self.assertIn(expected, lines)
        index = lines.index("locals:")
        self.assertEqual(lines[index + 1:index + 3], ["  mx.example.com", "  localhost"])
        env_at = lines.index("environment (smtpd):")
        self.assertEqual(lines[env_at + 1:], ["CHECKRECIPIENT=1", "MULTI=a\\nb", "PATH=/bin"])

    def test_without_me(self):
        """An uninitialised home says so and has no defaults derived from me."""
        (self.home.control / "me").unlink()
        lines = showctl_lines(Home(self.home.path), None, env={})
        self.assertIn("me: (none: run indimail init)", lines)
        self.assertIn("defaulthost: (none)", lines)
        self.assertFalse(any(line.startswith("environment") for line in lines))
