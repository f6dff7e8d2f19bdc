"""tlsdestinations parsing and lookup, and upstream's name matching."""

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.delivery.tlsdestinations import TLSPolicy, match_partner, tls_policy


class PolicyTests(SynchronousTestCase):

    def setUp(self):
        self.base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.base)
        (self.base / "control").mkdir()
        self.certs = self.base / "certs"
        self.control = ControlFiles(self.base / "control")

    def write(self, text):
        (self.base / "control" / "tlsdestinations").write_text(text)

    def policy(self, host, domain="example.com", port=25, env=None):
        return tls_policy(env or {}, self.control, self.certs, host, domain, port)

    def test_unlisted_is_opportunistic(self):
        """Without a matching line the answer is None (opportunistic)."""
        self.write("other.test:/ca.pem\n")
        self.assertIsNone(self.policy("mx.example.com"))

    def test_exact_parent_and_star(self):
        """Host, then parent ``.domain``, then the recipient domain, then ``*``."""
        self.write("mx.example.com:/a.pem\n.example.com:/b.pem\nexample.com:/c.pem\n*:/d.pem\n")
        self.assertEqual(self.policy("mx.example.com").cafile, "/a.pem")
        self.assertEqual(self.policy("mx2.example.com").cafile, "/b.pem")
        self.assertEqual(self.policy("relay.other.net").cafile, "/c.pem")
        self.assertEqual(self.policy("relay.other.net", "x.org").cafile, "/d.pem")

    def test_fields(self):
        """cafile relative to certs/, ciphers, and a port restriction."""
        self.write("mx.test:ca.pem:HIGH:587\nmx.test::MEDIUM\n")
        self.assertEqual(self.policy("mx.test", port=587),
                         TLSPolicy(str(self.certs / "ca.pem"), "HIGH"))
        self.assertEqual(self.policy("mx.test", port=25), TLSPolicy(None, "MEDIUM"))

    def test_bang_disables(self):
        """``!destination`` turns TLS off."""
        self.write("!example.com\n*:/ca.pem\n")
        self.assertIs(self.policy("mx.example.com"), False)

    def test_variable_names_file(self):
        """TLSDESTINATIONS names another control file."""
        (self.base / "control" / "tlsd2").write_text("*:/x.pem\n")
        self.assertEqual(self.policy("h", env={"TLSDESTINATIONS": "tlsd2"}).cafile, "/x.pem")

    def test_client_ciphers_default(self):
        """tlsclientciphers supplies the cipher list when the line has none."""
        self.write("*:/ca.pem\n")
        (self.base / "control" / "tlsclientciphers").write_text("HIGH\n")
        self.assertEqual(self.policy("h").ciphers, "HIGH")


class MatchTests(SynchronousTestCase):

    def test_match_partner(self):
        """Exact names match ignoring case; ``*.`` matches one label only."""
        self.assertTrue(match_partner("MX.Example.com", "mx.example.com"))
        self.assertTrue(match_partner("*.example.com", "mx.example.com"))
        self.assertFalse(match_partner("*.example.com", "a.mx.example.com"))
        self.assertFalse(match_partner("*.example.com", "example.com"))
        self.assertFalse(match_partner("other.com", "mx.example.com"))


class ResolverConfigTests(SynchronousTestCase):

    def test_resolvconf_variable(self):
        """Without an injected resolver, RESOLVCONF names the resolv.conf
        whose nameservers the system resolver uses."""
        from twisted.internet.testing import MemoryReactorClock

        from indimail.config.home import Home
        from indimail.delivery.remote import RemoteDelivery
        base = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, base)
        (base / "control").mkdir()
        conf = base / "resolv.conf"
        conf.write_text("nameserver 127.0.0.9\n")
        agent = RemoteDelivery(Home(base), ControlFiles(base / "control"),
                               reactor=MemoryReactorClock(), env={"RESOLVCONF": str(conf)})
        self.assertEqual(agent._system_resolver().dynServers, [("127.0.0.9", 53)])
