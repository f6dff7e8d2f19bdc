import io

import cdblib
from twisted.trial.unittest import SynchronousTestCase

from indimail.cli import indimail as cli
from indimail.config import init as init_module
from indimail.config.tcprules import TcpRules

from .helpers import setenv, tempdir


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


class CliTests(SynchronousTestCase):
    def setUp(self):
        self.patch(init_module, "machine_name", lambda: "cli.example.org")
        self.root = tempdir(self) / "home"
        setenv(self, "CONFSPLIT", "5")  # small queues keep the tests quick

    def test_init_then_again(self):
        """indimail init --home creates the home (--domain included); a second run changes nothing."""
        code, out, err = run("init", "--home", str(self.root), "--domain", "example.com")
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"created {self.root / 'control' / 'me'}", out)
        self.assertEqual((self.root / "control" / "virtualdomains").read_bytes(), b"example.com:example.com\n")
        code, out, err = run("init", "--home", str(self.root))
        self.assertEqual((code, out, err), (0, f"{self.root}: nothing to change\n", ""))

    def test_init_bad_domain(self):
        """A bad --domain is reported on stderr with exit 1."""
        code, out, err = run("init", "--home", str(self.root), "--domain", "a b")
        self.assertEqual(code, 1)
        self.assertIn("not a valid domain name", err)

    def test_cdb(self):
        """indimail cdb NAME compiles control/NAME to control/NAME.cdb."""
        (self.root / "control").mkdir(parents=True)
        (self.root / "control" / "badmailfrom").write_bytes(b"Spam@Example.com\n")
        code, out, err = run("cdb", "--home", str(self.root), "badmailfrom")
        self.assertEqual((code, err), (0, ""))
        reader = cdblib.Reader((self.root / "control" / "badmailfrom.cdb").read_bytes())
        self.assertEqual(list(reader.keys()), [b"spam@example.com"])

    def test_cdb_missing_file(self):
        """indimail cdb on a missing file exits 1 and names the file."""
        (self.root / "control").mkdir(parents=True)
        code, out, err = run("cdb", "--home", str(self.root), "nosuchfile")
        self.assertEqual(code, 1)
        self.assertIn(str(self.root / "control" / "nosuchfile"), err)

    def test_tcprules_default_and_named(self):
        """indimail tcprules compiles tcp/tcp.smtp by default, or tcp/NAME."""
        (self.root / "tcp").mkdir(parents=True)
        (self.root / "tcp" / "tcp.smtp").write_bytes(b"10.:deny\n:allow\n")
        (self.root / "tcp" / "tcp.qmtp").write_bytes(b"10.:allow\n:deny\n")
        self.assertEqual(run("tcprules", "--home", str(self.root))[0], 0)
        self.assertEqual(run("tcprules", "--home", str(self.root), "tcp.qmtp")[0], 0)
        self.assertFalse(TcpRules.load(self.root / "tcp" / "tcp.smtp.cdb").match("10.1.1.1").allow)
        self.assertFalse(TcpRules.load(self.root / "tcp" / "tcp.qmtp").match("11.1.1.1").allow)

    def test_tcprules_bad_line(self):
        """A malformed rule is reported with the file name and line number, exit 1, no cdb."""
        (self.root / "tcp").mkdir(parents=True)
        (self.root / "tcp" / "tcp.smtp").write_bytes(b"# rules\n10.:deny\n10.1.:permit\n")
        code, out, err = run("tcprules", "--home", str(self.root))
        self.assertEqual(code, 1)
        self.assertIn(f"{self.root / 'tcp' / 'tcp.smtp'}:3:", err)
        self.assertFalse((self.root / "tcp" / "tcp.smtp.cdb").exists())

    def test_showctl(self):
        """indimail showctl prints the control values and the chosen service's environment."""
        run("init", "--home", str(self.root))
        (self.root / "variables" / "send" / "SEND_VAR").write_bytes(b"yes\n")
        code, out, err = run("showctl", "--home", str(self.root), "--service", "send")
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertIn("me: cli.example.org", lines)
        self.assertIn("environment (send):", lines)
        self.assertIn("SEND_VAR=yes", lines)

    def test_home_from_environment(self):
        """Without --home, $INDIMAIL_HOME is used."""
        setenv(self, "INDIMAIL_HOME", str(self.root))
        code, out, err = run("init")
        self.assertEqual(code, 0, err)
        self.assertTrue((self.root / "control" / "me").exists())

    def test_subcommands_registry(self):
        """Subcommands live in a dict; register() adds one that main() can run."""
        self.assertLessEqual({"init", "cdb", "tcprules", "showctl"}, set(cli.SUBCOMMANDS))
        self.patch(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS))
        seen = []
        cli.register("hello", lambda parser: parser.add_argument("who"),
                     lambda args, out: seen.append((args.who, args.home)) or 3, "say hello")
        self.assertEqual(run("hello", "--home", "/h", "world")[0], 3)
        self.assertEqual(seen, [("world", "/h")])
