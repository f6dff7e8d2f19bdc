"""smtproutes parsing and qmail-remote's lookup order."""

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.environment import Environment
from indimail.delivery.smtproutes import Route, SmtpRoutes, parse_relay, routes_for

LINES = [
    "example.com:relay.example.net",
    ".example.org:relay2.example.net:2525",
    "mx.example.org:",
    "!@:bounces.example.net:26",
    ":smarthost.example.net:587:3600:120",
]


class ParseTests(SynchronousTestCase):

    def test_relay_only(self):
        """``relay`` alone means port 25."""
        self.assertEqual(parse_relay("relay.example.net"), Route("relay.example.net", 25))

    def test_port_penalty_tolerance(self):
        """``relay:port:penalty:tolerance`` fields are read."""
        self.assertEqual(parse_relay("h:2525:3600:120"), Route("h", 2525, 3600, 120))

    def test_credentials_ignored(self):
        """Trailing ``user password`` do not disturb the route."""
        self.assertEqual(parse_relay("h:587 user secret"), Route("h", 587))

    def test_empty_relay_is_mx(self):
        """An empty relay means MX delivery."""
        self.assertIsNone(parse_relay(""))

    def test_bracketed_literal(self):
        """A ``[ip]`` relay keeps its brackets for the resolver."""
        self.assertEqual(parse_relay("[127.0.0.1]:2525"), Route("[127.0.0.1]", 2525))

    def test_implicit_tls(self):
        """Port 465 is flagged as implicit TLS."""
        self.assertTrue(parse_relay("h:465").implicit_tls)


class LookupTests(SynchronousTestCase):

    def setUp(self):
        self.routes = SmtpRoutes.from_lines(LINES)

    def test_exact_domain(self):
        """The exact domain is tried first."""
        self.assertEqual(self.routes.lookup("example.com"), Route("relay.example.net"))

    def test_exact_is_case_insensitive(self):
        """Keys compare case-insensitively."""
        self.assertEqual(self.routes.lookup("EXAMPLE.com"), Route("relay.example.net"))

    def test_parent_with_leading_dot(self):
        """Then each parent domain with a leading dot."""
        self.assertEqual(self.routes.lookup("a.b.example.org"),
                         Route("relay2.example.net", 2525))

    def test_dot_entry_does_not_match_itself(self):
        """``.example.org`` does not match ``example.org`` itself."""
        self.assertEqual(self.routes.lookup("example.org").host, "smarthost.example.net")

    def test_empty_relay_stops_search(self):
        """An exact entry with an empty relay means MX, not the default route."""
        self.assertEqual(self.routes.find("mx.example.org"), (True, None))

    def test_default_route(self):
        """``:relay`` catches every other domain."""
        self.assertEqual(self.routes.lookup("elsewhere.test"),
                         Route("smarthost.example.net", 587, 3600, 120))

    def test_no_match(self):
        """Without a default route an unknown domain goes to MX."""
        routes = SmtpRoutes.from_lines(["example.com:relay"])
        self.assertEqual(routes.find("other.test"), (False, None))

    def test_bounce_route(self):
        """The null sender uses the ``!@`` route first."""
        self.assertEqual(self.routes.lookup("example.com", ""), Route("bounces.example.net", 26))
        self.assertEqual(self.routes.lookup("example.com", "a@b").host, "relay.example.net")

    def test_comments_skipped(self):
        """Comment lines are not routes."""
        routes = SmtpRoutes.from_lines(["# :nowhere", "example.com:relay"])
        self.assertIsNone(routes.lookup("x.test"))


class SourceTests(SynchronousTestCase):

    class Control:
        def __init__(self, files):
            self.files = files

        def lines(self, name):
            return self.files.get(name, [])

    def test_variable_overrides_file(self):
        """SMTPROUTE replaces control/smtproutes."""
        control = self.Control({"smtproutes": [":file.example.net"]})
        routes = routes_for(Environment({"SMTPROUTE": ":env.example.net:2525"}), control)
        self.assertEqual(routes.lookup("x.test"), Route("env.example.net", 2525))

    def test_file(self):
        """Without SMTPROUTE the control file is used."""
        control = self.Control({"smtproutes": [":file.example.net"]})
        self.assertEqual(routes_for(Environment(), control).lookup("x.test").host,
                         "file.example.net")

    def test_other_file(self):
        """SMTPROUTESFILE names another control file."""
        control = self.Control({"routes2": [":other.example.net"]})
        routes = routes_for(Environment({"SMTPROUTESFILE": "routes2"}), control)
        self.assertEqual(routes.lookup("x.test").host, "other.example.net")
