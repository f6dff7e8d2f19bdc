"""MAXHOPS: the hop limit from the session environment, winning over
control/maxhops (default 100 Received/Delivered-To header lines)."""

from __future__ import annotations

import os

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.smtp.service import SMTPFactory
from indimail.smtp.settings import load_settings
from indimail.smtp.testing import FakeSink

LOOPING = "554 too many hops, this message is looping (#5.4.6)"


def control(testcase, files: dict[str, str]) -> ControlFiles:
    path = testcase.mktemp()
    os.makedirs(path)
    for name, text in {"rcpthosts": "example.com\n", **files}.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    return ControlFiles(path)


class MaxhopsSettingsTests(SynchronousTestCase):

    def maxhops(self, env: dict, files: dict | None = None) -> int:
        return load_settings(control(self, files or {}), Environment(env), pid=1).maxhops

    def test_variable_wins_over_control_file(self):
        """MAXHOPS in the environment beats control/maxhops."""
        self.assertEqual(self.maxhops({"MAXHOPS": "7"}, {"maxhops": "30\n"}), 7)

    def test_control_file_without_variable(self):
        """Without MAXHOPS, control/maxhops sets the limit."""
        self.assertEqual(self.maxhops({}, {"maxhops": "30\n"}), 30)

    def test_nonsense_means_default(self):
        """MAXHOPS of 0, a negative number or no number: the default 100 (upstream:
        a limit <= 0 is 100)."""
        for value in ("0", "-5", "lots"):
            self.assertEqual(self.maxhops({"MAXHOPS": value}, {"maxhops": "30\n"}), 100, value)
        self.assertEqual(self.maxhops({}), 100)


class MaxhopsSessionTests(SynchronousTestCase):
    """A session built by the service's factory counts hops against MAXHOPS."""

    def session(self, env: dict, files: dict | None = None):
        self.sink = FakeSink()
        factory = SMTPFactory(control=control(self, files or {}), sink=self.sink,
                              env=lambda: env, rules=None, reactor=Clock())
        proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
                                    hostAddress=IPv4Address("TCP", "192.0.2.1", 25))
        proto.makeConnection(transport)
        return proto, transport

    def deliver(self, env: dict, hops: int, files: dict | None = None) -> str:
        proto, transport = self.session(env, files)
        header = "".join(f"Received: from hop{i}\r\n" for i in range(hops))
        proto.dataReceived(("HELO client.example\r\nMAIL FROM:<a@example.net>\r\n"
                            "RCPT TO:<b@example.com>\r\nDATA\r\n" + header +
                            "Subject: t\r\n\r\nbody\r\n.\r\n").encode())
        return transport.value().decode().split("\r\n")[-2]

    def test_variable_limit_applies(self):
        """MAXHOPS=3: three Received lines are refused, two pass although
        control/maxhops says 30."""
        self.assertEqual(self.deliver({"MAXHOPS": "3"}, 3, {"maxhops": "30\n"}), LOOPING)
        self.assertTrue(self.sink.messages[0].aborted)
        self.assertTrue(self.deliver({"MAXHOPS": "3"}, 2, {"maxhops": "30\n"})
                        .startswith("250 ok"))

    def test_variable_raises_limit(self):
        """MAXHOPS=10 lets five hops through where control/maxhops=4 would refuse."""
        self.assertEqual(self.deliver({}, 5, {"maxhops": "4\n"}), LOOPING)
        self.assertTrue(self.deliver({"MAXHOPS": "10"}, 5, {"maxhops": "4\n"})
                        .startswith("250 ok"))
