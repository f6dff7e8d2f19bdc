"""Builds an SMTP protocol on a StringTransport with a Clock and a fake sink."""

from __future__ import annotations

import os

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.plugins.api import PluginSetup
from indimail.smtp.protocol import SMTPServerProtocol
from indimail.smtp.service import build_plugin_chain
from indimail.smtp.session import Session
from indimail.smtp.settings import SessionSettings
from indimail.smtp.testing import FakeSink

REMOTE_IP = "192.0.2.7"
START = 1700000000.0


def control_dir(testcase, rcpthosts: str | None = "example.com\n.sub.example.org\n") -> str:
    """A control directory with *rcpthosts* (None: no file at all)."""
    path = testcase.mktemp()
    os.makedirs(path)
    if rcpthosts is not None:
        with open(os.path.join(path, "rcpthosts"), "w") as f:
            f.write(rcpthosts)
    return path


class Harness:
    """One connection: ``send()`` bytes, read ``replies()``."""

    def __init__(self, testcase, env: dict | None = None, sink: FakeSink | None = None,
                 rcpthosts: str | None = "example.com\n.sub.example.org\n",
                 transport_class=StringTransport, tls=None, auth=None, **settings):
        self.clock = Clock()
        self.clock.advance(START)
        self.sink = sink or FakeSink()
        self.control = ControlFiles(control_dir(testcase, rcpthosts))
        self.plugins = build_plugin_chain(PluginSetup(control=self.control, env=env or {}),
                                          self.clock)
        values = dict(me="mx.example.com", greeting="mx.example.com",
                      local_host="mx.example.com", pid=4711)
        values.update(settings)
        self.settings = SessionSettings(**values)
        self.env = Environment(env or {})
        self.transport = transport_class(peerAddress=IPv4Address("TCP", REMOTE_IP, 40000),
                                         hostAddress=IPv4Address("TCP", "192.0.2.1", 25))
        self.proto = SMTPServerProtocol(self._setup, self.plugins, self.sink, self.clock,
                                        tls=tls, auth=auth)
        self.proto.makeConnection(self.transport)
        self._read = 0
        self.greeting = self.replies()

    def _setup(self, peer, host):
        session = Session(env=self.env, remote_ip=peer.host, remote_port=peer.port,
                          local_ip=host.host, local_port=host.port)
        return session, self.settings

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.proto.dataReceived(data)

    def output(self) -> bytes:
        """Everything written since the last call."""
        value = self.transport.value()
        new = value[self._read:]
        self._read = len(value)
        return new

    def replies(self) -> list[str]:
        """The reply lines written since the last call, without CRLF."""
        return [line for line in self.output().decode().split("\r\n") if line]

    def codes(self) -> list[int]:
        return [int(line[:3]) for line in self.replies() if line[3:4] == " "]

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def transaction(self, sender="<a@example.net>", rcpts=("<b@example.com>",)) -> None:
        """MAIL, RCPTs and DATA, replies consumed (asserted 250/250/354)."""
        self.send(f"MAIL FROM:{sender}\r\n")
        for r in rcpts:
            self.send(f"RCPT TO:{r}\r\n")
        self.send("DATA\r\n")
        codes = self.codes()
        assert codes == [250] * (1 + len(rcpts)) + [354], codes
