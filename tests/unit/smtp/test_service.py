"""Service wiring on a MemoryReactor: listeners, tcprules, session env, reload."""

from __future__ import annotations

import datetime
import signal
from pathlib import Path

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.certs import self_signed_pem
from indimail.config.home import Home
from indimail.config.tcprules import TcpRuleResult
from indimail.smtp import tap
from indimail.smtp.service import SMTPService, make_smtp_service, normalise_ip, tcp_environment
from indimail.smtp.testing import FakeSink


class FakeRules:
    """tcprules answering from a dict of ip -> TcpRuleResult."""

    def __init__(self, table):
        self.table = table

    def match(self, ip):
        return self.table.get(ip, TcpRuleResult(True, [], None))


def make_home(testcase, smtpd_vars=None, submission_vars=None) -> Home:
    root = Path(testcase.mktemp())
    (root / "control").mkdir(parents=True)
    (root / "control" / "me").write_text("mx.example.com\n")
    (root / "control" / "rcpthosts").write_text("example.com\n")
    for service, values in (("smtpd", smtpd_vars), ("submission", submission_vars)):
        if values is not None:
            d = root / "variables" / service
            d.mkdir(parents=True)
            for k, v in values.items():
                (d / k).write_text(v + "\n")
    return Home(root)


def connect(factory, ip="192.0.2.9", port=5555, local=("192.0.2.1", 25)):
    cls = IPv6Address if ":" in ip else IPv4Address
    proto = factory.buildProtocol(cls("TCP", ip, port))
    if proto is None:
        return None, None
    transport = StringTransport(peerAddress=cls("TCP", ip, port),
                                hostAddress=cls("TCP", *local))
    proto.makeConnection(transport)
    return proto, transport


class Environment(SynchronousTestCase):

    def test_tcpserver_variables(self):
        """The session env gets PROTO and the TCP* variables, then the rule's assignments."""
        env = tcp_environment({"A": "1", "TCPREMOTEHOST": "stale"},
                              IPv4Address("TCP", "10.0.0.1", 1234),
                              IPv4Address("TCP", "10.0.0.2", 25),
                              [("RELAYCLIENT", ""), ("A", None), ("TCPLOCALPORT", "x")])
        self.assertEqual(dict(env), {"PROTO": "TCP", "TCPREMOTEIP": "10.0.0.1",
                                     "TCPREMOTEPORT": "1234", "TCPLOCALIP": "10.0.0.2",
                                     "TCPLOCALPORT": "x", "RELAYCLIENT": ""})

    def test_mapped_ipv4(self):
        """IPv4-mapped IPv6 peers are seen as their IPv4 address."""
        self.assertEqual(normalise_ip("::ffff:127.0.0.1"), "127.0.0.1")
        self.assertEqual(normalise_ip("::1"), "::1")


class Factory(SynchronousTestCase):

    def service(self, rules=None, **home_kw):
        home = make_home(self, **home_kw)
        svc = SMTPService(home, reactor=MemoryReactorClock(), env={"PATH": "/bin"},
                          sink=FakeSink(), rules=rules or FakeRules({}))
        return svc

    def test_deny_drops_connection(self):
        """A tcprules deny makes buildProtocol refuse the connection (tcpserver drops it)."""
        svc = self.service(FakeRules({"192.0.2.66": TcpRuleResult(False, [], "192.0.2.66")}))
        proto, _ = connect(svc.factory(), ip="192.0.2.66")
        self.assertIsNone(proto)

    def test_rule_assignments_reach_session(self):
        """An allow rule's assignments (RELAYCLIENT) are in the session env."""
        rules = FakeRules({"192.0.2.9": TcpRuleResult(True, [("RELAYCLIENT", "")], "192.0.2.9")})
        svc = self.service(rules, smtpd_vars={"DATABYTES": "1234"})
        proto, transport = connect(svc.factory())
        env = proto.session.env
        self.assertEqual(env["RELAYCLIENT"], "")
        self.assertEqual(env["TCPREMOTEIP"], "192.0.2.9")
        self.assertEqual(env["DATABYTES"], "1234")
        self.assertEqual(env["PATH"], "/bin")
        self.assertEqual(proto.settings.databytes, 1234)
        self.assertTrue(transport.value().startswith(b"220 mx.example.com "))
        proto.dataReceived(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@relay.example>\r\n")
        self.assertTrue(transport.value().endswith(b"250 ok\r\n250 ok\r\n"))

    def test_submission_environment(self):
        """The submission listener adds variables/submission over variables/smtpd."""
        svc = self.service(smtpd_vars={"A": "smtpd", "B": "smtpd"},
                           submission_vars={"B": "submission"})
        proto, _ = connect(svc.factory("submission"))
        self.assertEqual((proto.session.env["A"], proto.session.env["B"]),
                         ("smtpd", "submission"))

    def test_submission_requires_auth_by_default(self):
        """Submission sessions get REQUIREAUTH (RFC 6409); an empty
        variables/submission/REQUIREAUTH file switches it off; smtpd has none."""
        svc = self.service(smtpd_vars={}, submission_vars={})
        self.assertIn("REQUIREAUTH", connect(svc.factory("submission"))[0].session.env)
        self.assertNotIn("REQUIREAUTH", connect(svc.factory())[0].session.env)
        (svc.home.variables_for("submission") / "REQUIREAUTH").write_bytes(b"")
        svc.reload()
        self.assertNotIn("REQUIREAUTH", connect(svc.factory("submission"))[0].session.env)

    def test_defaultqueue_is_part_of_the_environment(self):
        """control/defaultqueue (QUEUE_BASE, QUEUE_COUNT ...) is under variables/smtpd."""
        home = make_home(self, smtpd_vars={"QUEUE_COUNT": "2"})
        (home.control / "defaultqueue").mkdir()
        (home.control / "defaultqueue" / "QUEUE_COUNT").write_text("5\n")
        (home.control / "defaultqueue" / "QUEUE_START").write_text("1\n")
        svc = SMTPService(home, reactor=MemoryReactorClock(), env={}, sink=FakeSink(),
                          rules=FakeRules({}))
        env = svc.environments["smtpd"]
        self.assertEqual((env["QUEUE_COUNT"], env["QUEUE_START"]), ("2", "1"))

    def test_reload_rereads_variables(self):
        """reload() (SIGHUP) re-reads variables/smtpd for new sessions."""
        svc = self.service(smtpd_vars={"DATABYTES": "10"})
        old, _ = connect(svc.factory())
        (svc.home.variables_for("smtpd") / "DATABYTES").write_text("20\n")
        svc.reload()
        new, _ = connect(svc.factory())
        self.assertEqual((old.settings.databytes, new.settings.databytes), (10, 20))

    def test_sighup_schedules_reload(self):
        """The SIGHUP handler installed at start asks the reactor to reload."""
        svc = self.service()
        calls = []
        svc.reload = lambda: calls.append(1)
        svc.reactor.callFromThread = lambda f, *a: f(*a)
        svc.startService()
        try:
            handler = signal.getsignal(signal.SIGHUP)
            handler(signal.SIGHUP, None)
        finally:
            svc.stopService()
        self.assertEqual(calls, [1])
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), handler)

    def test_smtps_sessions_are_tls(self):
        """Sessions of the implicit-TLS listener report ESMTPS."""
        svc = self.service()
        proto, _ = connect(svc.factory(tls=True))
        self.assertEqual(proto.session.protocol_name, "ESMTPS")


class MakeService(SynchronousTestCase):

    def test_listeners(self):
        """make_smtp_service listens on each endpoint given and is named indimail-smtpd."""
        home = make_home(self)
        reactor = MemoryReactorClock()
        svc = make_smtp_service(home, reactor=reactor, smtp="tcp:2525:interface=127.0.0.1",
                                submission="tcp:2587:interface=127.0.0.1", env={})
        self.assertEqual(svc.name, "indimail-smtpd")
        self.assertEqual(sorted(s.name for s in svc), ["smtp", "submission"])
        svc.startService()
        self.addCleanup(svc.stopService)
        self.assertEqual(sorted(p[0] for p in reactor.tcpServers), [2525, 2587])

    def test_queue_threads_live_with_the_service(self):
        """The queue thread pool starts with the service and is stopped with it,
        so no worker thread outlives the service."""
        svc = make_smtp_service(make_home(self), reactor=MemoryReactorClock(),
                                smtp="tcp:2525", env={})
        pool = svc.sink.threadpool
        self.assertFalse(pool.started)
        svc.startService()
        self.assertTrue(pool.started)
        self.successResultOf(svc.stopService())
        self.assertFalse(pool.started)
        self.assertFalse(any(t.is_alive() for t in pool.threads))

    def test_none_disables(self):
        """A listener given as None is not started."""
        svc = make_smtp_service(make_home(self), reactor=MemoryReactorClock(), smtp=None,
                                env={})
        self.assertEqual(list(svc), [])


class Tap(SynchronousTestCase):

    def test_options_and_make_service(self):
        """``twistd indimail-smtpd --home H --smtp none`` builds the service; the SMTPS
        default needs certs/servercert.pem."""
        home = make_home(self)
        options = tap.Options()
        options.parseOptions(["--home", str(home.path), "--smtp", "tcp:0:interface=127.0.0.1",
                              "--submission", "none"])
        svc = tap.makeService(options)
        self.assertEqual([s.name for s in svc], ["smtp", "log-buffering", "gc-freeze"])
        (home.path / "certs").mkdir()
        (home.path / "certs" / "servercert.pem").write_bytes(
            self_signed_pem("localhost", datetime.datetime.now(datetime.timezone.utc),
                            key_size=1024))
        svc = tap.makeService(options)
        self.assertEqual(sorted(s.name for s in svc), ["gc-freeze", "log-buffering", "smtp", "smtps"])

    def test_dropin(self):
        """The twistd dropin names the tap module and the tapname indimail-smtpd."""
        from twisted.plugins import indimail_smtpd
        self.assertEqual(indimail_smtpd.indimail_smtpd.tapname, "indimail-smtpd")
        self.assertEqual(indimail_smtpd.indimail_smtpd.module, "indimail.smtp.tap")


class PluginWiring(SynchronousTestCase):
    """The service builds its plugins from the variables and rebuilds them on SIGHUP."""

    def service(self, smtpd_vars=None):
        return SMTPService(make_home(self, smtpd_vars=smtpd_vars), reactor=MemoryReactorClock(),
                           env={}, sink=FakeSink(), rules=FakeRules({}))

    def test_reload_rebuilds_plugins(self):
        """A PLUGIN0 written after start takes effect for sessions after reload()."""
        svc = self.service(smtpd_vars={})
        self.assertIsNone(svc.plugins.find("noreply"))
        (svc.home.variables_for("smtpd") / "PLUGIN0").write_text(
            "indimail.plugins.example:NoReply\n")
        (svc.home.variables_for("smtpd") / "NOREPLY").write_text("noreply\n")
        svc.reload()
        proto, transport = connect(svc.factory())
        proto.dataReceived(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<noreply@example.com>\r\n")
        self.assertIn(b"553 sorry, noreply@example.com does not accept mail",
                      transport.value())

    def test_broken_plugin_keeps_old_set_on_reload(self):
        """A PLUGIN0 that cannot load is reported and the old plugins stay."""
        svc = self.service(smtpd_vars={})
        before = svc.plugins
        (svc.home.variables_for("smtpd") / "PLUGIN0").write_text("no_such_mod_q:Thing\n")
        svc.reload()
        self.assertIs(svc.plugins, before)
        self.assertTrue(self.flushLoggedErrors())
