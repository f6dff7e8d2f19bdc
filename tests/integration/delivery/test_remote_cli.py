"""The qmail-remote command: the built-in remote delivery with
qmail-remote's arguments and report format, usable from QMAILREMOTE
scripts (``exec qmail-remote "$@"``)."""

import os
import stat
import sys

from twisted.internet import reactor

from indimail.delivery.remote import RemoteDelivery
from indimail.testing import ChildProcess, child_env
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedFactory, ScriptedServerCase

BODY = b"Subject: cli\n\nbody\n"


class QmailRemoteCommandTests(ScriptedServerCase):
    factory_class = ScriptedFactory
    BODY = BODY

    def env(self, **extra):
        env = {k: v for k, v in child_env().items()
               if not k.startswith(("QUEUE", "QMAIL", "SMTPROUTE", "ON"))}
        env.update(INDIMAIL_HOME=str(self.home.path), **extra)
        return env

    async def run_cli(self, args, stdin_path, **extra):
        """Run ``python -m indimail.cli.qmail_remote`` with *stdin_path* on
        fd 0 (through /bin/sh); returns (exit code, stdout bytes)."""
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)
        child = ChildProcess(reactor, ["/bin/sh", "-c",
                                       f"exec {sys.executable} -m indimail.cli.qmail_remote "
                                       f"{quoted} < '{stdin_path}' 2>/dev/null"],
                             env=self.env(**extra))
        code = await child.proto.ended
        return code, child.proto.output

    async def test_success(self):
        """An accepted recipient: an ``r`` report and a K message report
        with the text; the server got the message after the qqeh."""
        server, port = self.serve()
        mess = self.queue.mess(self.msgid)
        code, out = await self.run_cli(
            ["remote.test", "bob@example.org", "X-Q: 1\n", str(len(BODY)), "carol@remote.test"],
            mess, SMTPROUTE=f":127.0.0.1:{port}")
        self.assertEqual(code, 0)
        self.assertEqual(out, b"r\0KFrom: <bob@example.org> RCPT: <carol@remote.test> "
                              b"127.0.0.1 accepted message - Protocol SMTP.\n"
                              b"Remote host said: 250 ok queued\n\0")
        self.assertEqual(server.messages, [b"X-Q: 1\r\nSubject: cli\r\n\r\nbody\r\n"])

    async def test_rejection(self):
        """A refused recipient: an ``h`` report with the text, then D."""
        server, port = self.serve(rcpt="550 no such user")
        code, out = await self.run_cli(
            ["remote.test", "bob@example.org", "", "10", "carol@remote.test"],
            self.queue.mess(self.msgid), SMTPROUTE=f":127.0.0.1:{port}")
        self.assertEqual(out, b"hFrom: <bob@example.org> RCPT: <carol@remote.test> 127.0.0.1 "
                              b"does not like recipient.\nRemote host said: 550 no such user\n"
                              b"Giving up on 127.0.0.1.\n\0D\0")

    async def test_usage(self):
        """Too few arguments: upstream's usage report."""
        code, out = await self.run_cli(["remote.test"], "/dev/null")
        self.assertEqual(out, b"DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0")

    async def test_as_qmailremote_target(self):
        """A QMAILREMOTE script ending in ``exec qmail-remote "$@"`` delivers
        through the command, and its report is read back."""
        server, port = self.serve()
        script = self.home.path / "hook"
        script.write_text(f"#!/bin/sh\nexec {sys.executable} -m indimail.cli.qmail_remote "
                          '"$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        agent = RemoteDelivery(self.home, control(self.home), reactor=reactor,
                               env=self.env(QMAILREMOTE=str(script),
                                            SMTPROUTE=f":127.0.0.1:{port}"),
                               resolver=FakeResolver())
        result = await agent.deliver(self.queue, self.msgid, "bob@example.org",
                                     "carol@remote.test")
        self.assertEqual(result.status, "success", result.report)
        self.assertTrue(result.report.endswith("Remote host said: 250 ok queued"), result.report)
        self.assertEqual(len(server.messages), 1)
        self.assertTrue(os.path.exists(script))
