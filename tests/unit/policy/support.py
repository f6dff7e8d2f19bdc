"""An SMTP protocol on a StringTransport whose control directory a test
fills before the client connects, and helpers that wait for replies (list
plugins read changed files in a worker thread, so replies may come later)."""

from __future__ import annotations

import os
import re

from twisted.internet import reactor
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
from indimail.testing import wait_for

REMOTE_IP = "192.0.2.7"
_ENHANCED = re.compile(r"^(\d{3}[ -])\d\.\d{1,3}\.\d{1,3} ")


def plain(lines: list[str]) -> list[str]:
    """Reply lines without the RFC 3463 code ENHANCEDSTATUSCODES puts in front
    (the texts keep upstream's own ``(#x.y.z)``)."""
    return [_ENHANCED.sub(r"\1", line) for line in lines]


def write_control(directory: str, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = os.path.join(directory, name)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as f:
            f.write(content)


class PolicyHarness:
    """One connection to a protocol running every built-in plugin over a
    control directory holding ``rcpthosts`` and *files*."""

    def __init__(self, testcase, files: dict[str, str | bytes] | None = None,
                 env: dict | None = None, remote_ip: str = REMOTE_IP):
        self.directory = testcase.mktemp()
        os.makedirs(self.directory)
        write_control(self.directory, {"rcpthosts": "example.com\n", **(files or {})})
        self.control = ControlFiles(self.directory)
        self.clock = Clock()
        self.clock.advance(1700000000)
        self.sink = FakeSink()
        self.env = Environment(env or {})
        self.plugins = build_plugin_chain(
            PluginSetup(control=self.control, env=env or {}, reactor=reactor), self.clock)
        self.settings = SessionSettings(me="mx.example.com", greeting="mx.example.com",
                                        local_host="mx.example.com", pid=4711)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", remote_ip, 40000),
                                         hostAddress=IPv4Address("TCP", "192.0.2.1", 25))
        self.proto = SMTPServerProtocol(self._setup, self.plugins, self.sink, self.clock)
        self._read = 0

    def _setup(self, peer, host):
        self.session = Session(env=self.env, remote_ip=peer.host, remote_port=peer.port,
                               local_ip=host.host, local_port=host.port)
        return self.session, self.settings

    def write(self, name: str, content: str | bytes) -> None:
        write_control(self.directory, {name: content})

    def _complete(self) -> list[str] | None:
        text = self.transport.value()[self._read:].decode()
        lines = [line for line in text.split("\r\n") if line]
        if lines and text.endswith("\r\n") and lines[-1][3:4] in (" ", ""):
            self._read = len(self.transport.value())
            self.raw = lines
            return plain(lines)
        return None

    async def connect(self) -> list[str]:
        """Connect and return the greeting (or refusal) lines."""
        self.proto.makeConnection(self.transport)
        return await wait_for(reactor, self._complete, what="greeting")

    async def ask(self, line: str) -> list[str]:
        """Send one command line and return its reply lines (:func:`plain`;
        ``self.raw`` has them as sent)."""
        self.proto.dataReceived(line.encode() + b"\r\n")
        return await wait_for(reactor, self._complete, what=f"reply to {line!r}")

    async def code(self, line: str) -> int:
        return int((await self.ask(line))[-1][:3])

    async def start(self, helo: str = "EHLO client.example.net") -> None:
        await self.connect()
        await self.ask(helo)

    async def message(self, body: str = "Subject: t\r\n\r\nhi\r\n.") -> list[str]:
        """DATA, the body and the end-of-data dot; the final reply."""
        assert (await self.ask("DATA"))[-1].startswith("354")
        for line in body.split("\r\n"):
            self.proto.dataReceived(line.encode() + b"\r\n")
        return await wait_for(reactor, self._complete, what="end of data reply")

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting
