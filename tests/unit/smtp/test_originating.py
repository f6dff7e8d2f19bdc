"""X-Originating-IP on relayed mail (upstream qmail-queue's ORIGINIPFIELD)."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.smtp.settings import load_settings

from .support import REMOTE_IP, Harness, control_dir

HEADER = f"X-Originating-IP: {REMOTE_IP}\n".encode()


def send(h: Harness, bdat: bool = False) -> bytes:
    h.send("EHLO client.example.net\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n")
    if bdat:
        h.send(b"BDAT 3 LAST\r\nx\r\n")
    else:
        h.send("DATA\r\nx\r\n.\r\n")
    [message] = h.sink.messages
    assert message.finished is not None, h.replies()
    return message.data


class Header(SynchronousTestCase):

    def test_relayclient(self):
        """On and RELAYCLIENT set: the header comes first, before smtpd's
        Received line (after the queue's own, as upstream's qmail-queue)."""
        data = send(Harness(self, env={"RELAYCLIENT": ""}, originipfield=True))
        self.assertTrue(data.startswith(HEADER + b"Received: indimail-mta smtpd "), data)

    def test_authenticated(self):
        """TCPREMOTEINFO (set by AUTH) counts as relaying too; BDAT gets it as well."""
        data = send(Harness(self, env={"TCPREMOTEINFO": "alice"}, originipfield=True),
                    bdat=True)
        self.assertTrue(data.startswith(HEADER), data)

    def test_not_relayed(self):
        """A client that may not relay (mail to rcpthosts) gets no header."""
        data = send(Harness(self, originipfield=True))
        self.assertNotIn(b"X-Originating-IP", data)

    def test_off_by_default(self):
        """Without ORIGINIPFIELD/originipfield there is no header."""
        data = send(Harness(self, env={"RELAYCLIENT": ""}))
        self.assertNotIn(b"X-Originating-IP", data)


class Settings(SynchronousTestCase):

    def test_control_and_variable(self):
        """control/originipfield non-zero turns it on; ORIGINIPFIELD wins over it."""
        path = control_dir(self, None)
        control = ControlFiles(path)
        self.assertFalse(load_settings(control, Environment(), pid=1).originipfield)
        with open(os.path.join(path, "originipfield"), "w") as f:
            f.write("1\n")
        self.assertTrue(load_settings(control, Environment(), pid=1).originipfield)
        self.assertFalse(load_settings(control, Environment({"ORIGINIPFIELD": "0"}),
                                       pid=1).originipfield)
        self.assertTrue(load_settings(ControlFiles(control_dir(self, None)),
                                      Environment({"ORIGINIPFIELD": "1"}), pid=1).originipfield)
