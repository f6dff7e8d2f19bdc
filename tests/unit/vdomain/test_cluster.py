"""Cluster routing's local host id and route lookup (store faked)."""

from pathlib import Path

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from indimail.vdomain.cluster import find_route, local_hostid


class _Store:
    """hostcntrl/host_table/smtp_port as dictionaries."""

    def __init__(self):
        self.hosts = {("carol", "example.org"): "mail2", ("dan", "example.org"): "mail9"}
        self.ips = {"mail2": "10.0.0.2"}
        self.asked = []

    def mailstore(self, user, domain):
        return defer.succeed(self.hosts.get((user, domain)))

    def host_ip(self, host):
        return defer.succeed(self.ips.get(host))

    def smtp_port(self, host, src_host, domain):
        self.asked.append((host, src_host, domain))
        return defer.succeed(2525)


class ClusterTests(SynchronousTestCase):
    def test_local_hostid(self):
        """HOSTID wins; else the first line of control/hostid; else unknown."""
        home = Path(self.mktemp())
        (home / "control").mkdir(parents=True)
        self.assertIsNone(local_hostid({"INDIMAIL_HOME": str(home)}))
        (home / "control" / "hostid").write_text("mail1\n")
        self.assertEqual(local_hostid({"INDIMAIL_HOME": str(home)}), "mail1")
        self.assertEqual(local_hostid({"INDIMAIL_HOME": str(home), "HOSTID": "x"}), "x")
        self.assertEqual(local_hostid({"CONTROLDIR": str(home / "control")}), "mail1")

    def test_find_route(self):
        """domain:ip:port for a user on another store; None for ours, unknown
        users and hosts without an address."""
        store = _Store()
        self.assertEqual(self.successResultOf(defer.ensureDeferred(
            find_route(store, "carol", "example.org", "mail1"))), "example.org:10.0.0.2:2525")
        self.assertEqual(store.asked, [("10.0.0.2", "mail1", "example.org")])
        for user, hostid in (("carol", "mail2"), ("nobody", "mail1"), ("dan", "mail1")):
            self.assertIsNone(self.successResultOf(defer.ensureDeferred(
                find_route(store, user, "example.org", hostid))))
