"""qmtproutes beside smtproutes: default port 209, per-key precedence,
bounce routes, the variables, and the penalty/max_tolerance fields."""

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.delivery.qmtproutes import QmtpRoutes, choose_route, route_for
from indimail.delivery.smtproutes import Route, SmtpRoutes, parse_relay


class QmtpParseTests(SynchronousTestCase):

    def test_default_port_209(self):
        """A QMTP route without a port goes to 209."""
        route = QmtpRoutes.from_lines(["example.com:relay.test"]).lookup("example.com")
        self.assertEqual((route.host, route.port, route.protocol), ("relay.test", 209, "qmtp"))

    def test_port_given(self):
        """An explicit port is kept, and 465 is not SMTPS for QMTP."""
        route = parse_relay("relay.test:465", "qmtp")
        self.assertEqual(route.port, 465)
        self.assertFalse(route.implicit_tls)

    def test_penalty_and_tolerance(self):
        """``relay:port:penalty:max_tolerance`` with an empty port means 25."""
        self.assertEqual(parse_relay("relay.test::7200:60"), Route("relay.test", 25, 7200, 60))
        self.assertEqual(parse_relay("relay.test:26:0"), Route("relay.test", 26, 0, None))


class PrecedenceTests(SynchronousTestCase):

    def setUp(self):
        self.smtp = SmtpRoutes.from_lines(["a.example.com:smtp-a", ".example.com:smtp-dom",
                                           "!@:smtp-bounce", ":smtp-default"])
        self.qmtp = QmtpRoutes.from_lines([".example.com:qmtp-dom", "b.example.com:"])

    def test_qmtp_first_at_same_key(self):
        """For the same key the qmtproutes line wins."""
        route = choose_route(self.smtp, self.qmtp, "c.example.com")
        self.assertEqual((route.host, route.protocol), ("qmtp-dom", "qmtp"))

    def test_more_specific_smtp_wins(self):
        """An exact smtproutes key beats a parent qmtproutes key."""
        route = choose_route(self.smtp, self.qmtp, "a.example.com")
        self.assertEqual((route.host, route.protocol), ("smtp-a", "smtp"))

    def test_empty_qmtp_means_mx(self):
        """An empty relay in qmtproutes stops the lookup: MX delivery."""
        self.assertIsNone(choose_route(self.smtp, self.qmtp, "b.example.com"))

    def test_default_route(self):
        """Hosts matching nothing else take the default route."""
        self.assertEqual(choose_route(self.smtp, self.qmtp, "other.org").host, "smtp-default")

    def test_bounce_route(self):
        """The null sender tries ``!@`` first, qmtproutes before smtproutes."""
        self.assertEqual(choose_route(self.smtp, self.qmtp, "c.example.com", "").host,
                         "smtp-bounce")
        qmtp = QmtpRoutes.from_lines(["!@:qmtp-bounce"])
        route = choose_route(self.smtp, qmtp, "c.example.com", "")
        self.assertEqual((route.host, route.protocol), ("qmtp-bounce", "qmtp"))


class VariableTests(SynchronousTestCase):

    def setUp(self):
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base)
        self.control = ControlFiles(Path(self.base))

    def test_qmtproute_variable(self):
        """QMTPROUTE replaces control/qmtproutes."""
        (Path(self.base) / "qmtproutes").write_text("example.com:from-file\n")
        route = route_for({"QMTPROUTE": "example.com:from-env:2209"}, self.control,
                          "example.com")
        self.assertEqual((route.host, route.port, route.protocol), ("from-env", 2209, "qmtp"))

    def test_route_files_named_by_variables(self):
        """QMTPROUTEFILE and SMTPROUTEFILE name other control files."""
        (Path(self.base) / "q2").write_text("q.test:qrelay\n")
        (Path(self.base) / "s2").write_text("s.test:srelay\n")
        env = {"QMTPROUTEFILE": "q2", "SMTPROUTEFILE": "s2"}
        self.assertEqual(route_for(env, self.control, "q.test").host, "qrelay")
        self.assertEqual(route_for(env, self.control, "s.test").host, "srelay")

    def test_x_smtproutes(self):
        """X-SMTPROUTES is used when SMTPROUTE is not set."""
        route = route_for({"X-SMTPROUTES": ":xrelay"}, self.control, "any.test")
        self.assertEqual(route.host, "xrelay")
        route = route_for({"X-SMTPROUTES": ":xrelay", "SMTPROUTE": ":srelay"}, self.control,
                          "any.test")
        self.assertEqual(route.host, "srelay")
