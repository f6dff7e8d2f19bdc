"""QMAILREMOTE (a program instead of the built-in remote delivery, with
qmail-remote's arguments and report format), the ON*_REMOTE scripts, and
BATV signing of the sender, against real servers and real child processes."""

import hashlib
import os
import stat

from twisted.internet import reactor, task
from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery.remote import RemoteDelivery
from indimail.delivery.remotehooks import parse_report
from tests.unit.delivery.support import control
from tests.unit.delivery.test_mx import FakeResolver

from .smtpserver import ScriptedFactory, ScriptedServerCase

BODY = b"Subject: hook\n\nbody\n"


class Base(ScriptedServerCase):
    factory_class = ScriptedFactory
    BODY = BODY

    def script(self, name: str, body: str) -> str:
        path = self.home.path / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    def agent(self, clock=None, **env):
        env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        return RemoteDelivery(self.home, control(self.home), reactor=reactor, env=env,
                              resolver=FakeResolver(), clock=clock)

    def deliver(self, agent, sender="bob@example.org", qqeh="X-Q: 1\n"):
        return agent.deliver(self.queue, self.msgid, sender, "carol@remote.test", qqeh)

    def read(self, name: str) -> str:
        return (self.home.path / name).read_text()


class QmailRemoteTests(Base):

    async def test_arguments_stdin_and_success(self):
        """The program gets host, sender, qqeh, size, recipient and the
        message on stdin; ``r`` then ``K`` is success with the K text."""
        prog = self.script("qr", 'printf "%s|" "$0" "$@" > "$OUT/args"\ncat > "$OUT/stdin"\n'
                                 'echo "$QMAILREMOTE" > "$OUT/var"\n'
                                 "printf 'r\\0K10.0.0.9 accepted message.\\nRemote host said: "
                                 "250 fine\\n\\0'\n")
        result = await self.deliver(self.agent(QMAILREMOTE=prog, OUT=str(self.home.path)))
        self.assertEqual((result.status, result.report), (
            "success", "10.0.0.9 accepted message.\nRemote host said: 250 fine"))
        self.assertEqual(self.read("args"),
                         f"{prog}|remote.test|bob@example.org|X-Q: 1\n|{len(BODY)}|"
                         "carol@remote.test|")
        self.assertEqual(self.read("stdin").encode(), BODY)
        self.assertEqual(self.read("var"), prog + "\n")

    async def test_recipient_rejected(self):
        """``h`` is a permanent failure; the D text follows."""
        prog = self.script("qr", "cat >/dev/null\nprintf 'h10.0.0.9 does not like recipient."
                                 "\\nRemote host said: 550 no\\n\\0DGiving up on 10.0.0.9.\\n\\0'\n")
        result = await self.deliver(self.agent(QMAILREMOTE=prog))
        self.assertEqual((result.status, result.report), (
            "failure", "10.0.0.9 does not like recipient.\nRemote host said: 550 no\n"
                       "Giving up on 10.0.0.9."))

    async def test_temporary(self):
        """``s`` is a deferral, whatever the message report says."""
        prog = self.script("qr", "cat >/dev/null\nprintf 's10.0.0.9 busy\\n\\0DGiving up\\n\\0'\n")
        result = await self.deliver(self.agent(QMAILREMOTE=prog))
        self.assertEqual((result.status, result.report), ("deferral", "10.0.0.9 busy\nGiving up"))

    async def test_exit_codes(self):
        """Exit 111 defers, other non-zero exits fail, no output defers."""
        for body, expected in (("exit 111\n", ("deferral", "Unable to run qmail-remote.")),
                               ("exit 3\n", ("failure", "Unable to run qmail-remote.")),
                               ("exit 0\n", ("deferral", "qmail-remote produced no output."))):
            prog = self.script("qr", "cat >/dev/null\n" + body)
            result = await self.deliver(self.agent(QMAILREMOTE=prog))
            self.assertEqual((result.status, result.report), expected)

    async def test_no_builtin_connection(self):
        """With QMAILREMOTE set the built-in client does not connect."""
        server, port = self.serve()
        prog = self.script("qr", "cat >/dev/null\nprintf 'r\\0Kok\\n\\0'\n")
        result = await self.deliver(self.agent(QMAILREMOTE=prog, SMTPROUTE=f":127.0.0.1:{port}"))
        self.assertEqual(result.status, "success")
        self.assertEqual(server.connections, 0)


class ReportTests(SynchronousTestCase):

    def test_message_report_only(self):
        """A lone Z message report (no recipient report) defers with its text."""
        result = parse_report(b"ZSorry, I couldn't find any host by that name. (#4.1.2)\n\0", 0)
        self.assertEqual((result.status, result.report),
                         ("deferral", "Sorry, I couldn't find any host by that name. (#4.1.2)"))

    def test_crash(self):
        """A program killed by a signal: qmail-remote crashed."""
        self.assertEqual(parse_report(b"", None).report, "qmail-remote crashed.")


class ResultScriptTests(Base):

    DUMP = ('printf "%s|" "$@" > "$OUT/args"\n'
            'printf "%s\\n%s\\n%s\\n%s\\n%s" "$SMTPSTATUS" "$SMTPCODE" "$SMTPHOST" '
            '"${ONFAILURE_REMOTE:-unset}" "$SMTPTEXT" > "$OUT/env"\n')

    async def test_onsuccess(self):
        """ONSUCCESS_REMOTE runs after a success with qmail-remote's
        arguments, SMTPSTATUS=K, the final reply's SMTPCODE and SMTPTEXT,
        SMTPHOST, and without the other ON* variables."""
        server, port = self.serve()
        prog = self.script("ok", self.DUMP)
        result = await self.deliver(self.agent(
            SMTPROUTE=f":127.0.0.1:{port}", OUT=str(self.home.path), ONSUCCESS_REMOTE=prog,
            ONFAILURE_REMOTE="/bin/false"))
        self.assertEqual(result.status, "success", result.report)
        self.assertEqual(self.read("args"),
                         f"remote.test|bob@example.org|X-Q: 1\n|{len(BODY)}|carol@remote.test|")
        self.assertEqual(self.read("env"), "K\n250\n127.0.0.1\nunset\n250 ok queued")

    async def test_onfailure(self):
        """ONFAILURE_REMOTE runs after a permanent failure with the remote's reply."""
        server, port = self.serve(rcpt="550 5.1.1 no such user")
        prog = self.script("bad", self.DUMP)
        result = await self.deliver(self.agent(
            SMTPROUTE=f":127.0.0.1:{port}", OUT=str(self.home.path), ONFAILURE_REMOTE=prog))
        self.assertEqual(result.status, "failure")
        status, code, host, _var, text = self.read("env").split("\n", 4)
        self.assertEqual((status, code, host, text), ("D", "550", "127.0.0.1",
                                                      "550 5.1.1 no such user"))

    async def test_ontemporary_without_conversation(self):
        """ONTEMPORARY_REMOTE after a failure to connect: SMTPCODE 0 and the
        report as SMTPTEXT."""
        from indimail.testing import free_port
        port = free_port()
        prog = self.script("tmp", self.DUMP)
        result = await self.deliver(self.agent(
            SMTPROUTE=f":127.0.0.1:{port}", OUT=str(self.home.path), ONTEMPORARY_REMOTE=prog))
        self.assertEqual(result.status, "deferral")
        status, code, _host, _var, text = self.read("env").split("\n", 4)
        self.assertEqual((status, code, text), ("Z", "0", result.report))

    async def test_script_exit_code_applies(self):
        """As upstream documents, the script's exit code becomes
        qmail-remote's: 111 defers, other non-zero codes fail."""
        server, port = self.serve()
        prog = self.script("ok", "exit 111\n")
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}",
                                               ONSUCCESS_REMOTE=prog))
        self.assertEqual((result.status, result.report),
                         ("deferral", "Unable to run qmail-remote."))
        prog = self.script("ok", "exit 2\n")
        result = await self.deliver(self.agent(SMTPROUTE=f":127.0.0.1:{port}",
                                               ONSUCCESS_REMOTE=prog))
        self.assertEqual((result.status, result.report),
                         ("failure", "Unable to run qmail-remote."))


class BatvTests(Base):

    NOW = 86400 * 20_123 + 100

    def batv_agent(self, port, **env):
        clock = task.Clock()
        clock.advance(self.NOW)
        return self.agent(clock=clock, SMTPROUTE=f":127.0.0.1:{port}", **env)

    async def test_sender_signed(self):
        """With control/batvkey the MAIL FROM carries prvs=0DDDhhhhhh=sender."""
        (self.home.control / "batvkey").write_text("s3cret\n")
        server, port = self.serve()
        result = await self.deliver(self.batv_agent(port))
        self.assertEqual(result.status, "success", result.report)
        tag = hashlib.md5(b"0123bob@example.orgs3cret").hexdigest()[:6]
        self.assertTrue(server.commands[1].startswith(
            f"MAIL FROM:<prvs=0123{tag}=bob@example.org>"), server.commands[1])

    async def test_not_signed(self):
        """No key, a recipient domain in batvnosignremote, a sender domain in
        batvnosignlocals, or the null sender: the sender goes out unchanged."""
        server, port = self.serve()
        await self.deliver(self.batv_agent(port))
        (self.home.control / "batvkey").write_text("s3cret\n")
        (self.home.control / "batvnosignremote").write_text("remote.test\n")
        await self.deliver(self.batv_agent(port))
        (self.home.control / "batvnosignremote").unlink()
        (self.home.control / "batvnosignlocals").write_text("example.org\n")
        await self.deliver(self.batv_agent(port))
        (self.home.control / "batvnosignlocals").unlink()
        await self.deliver(self.batv_agent(port), sender="")
        mails = [c.split(" SIZE")[0] for c in server.commands if c.startswith("MAIL")]
        self.assertEqual(mails, ["MAIL FROM:<bob@example.org>"] * 3 + ["MAIL FROM:<>"])

    async def test_key_file_variable(self):
        """BATVKEY names another control file for the key."""
        (self.home.control / "otherkey").write_text("k2\n")
        server, port = self.serve()
        await self.deliver(self.batv_agent(port, BATVKEY="otherkey"))
        self.assertIn("MAIL FROM:<prvs=0123", server.commands[1])
