"""accesslist, ANTISPOOFING and hostaccess through indimail-smtpd on a real loopback socket,
configured the IndiMail way (control files, ``variables/smtpd``), talked to by smtplib."""

from __future__ import annotations

import smtplib
from pathlib import Path

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.config.tcprules import compile_tcprules
from indimail.queue.envelope import Envelope
from tests.integration.smtp.test_smtpd import serve_home

ME = "mx.example.com"


class AccessPolicyTest(TestCase):

    def start(self, control: dict[str, str] | None = None,
              variables: dict[str, str] | None = None) -> None:
        """A fresh home with *control* files and smtpd *variables*, served;
        the loopback client is not a relay client (tcp.smtp)."""
        self.home = init_home(Path(self.mktemp()).absolute(), env={}, hostname=ME)
        source = self.home.tcp / "tcp.smtp"
        source.write_text(":allow\n")
        compile_tcprules(source, source.with_name("tcp.smtp.cdb"))
        for name, text in (control or {}).items():
            (self.home.control / name).write_text(text)
        vdir = self.home.variables_for("smtpd")
        vdir.mkdir(parents=True, exist_ok=True)
        for name, value in (variables or {}).items():
            (vdir / name).write_text(value + "\n")
        serve_home(self, self.home)

    def session(self, steps):
        """Run *steps(client)* in a thread with an smtplib client; its result."""
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                              timeout=30) as client:
                client.ehlo()
                return steps(client)
        return threads.deferToThread(run)

    def queued(self) -> list[Envelope]:
        queue = self.home.queue_base / "queue1"
        return [Envelope.from_todo(t.read_bytes()) for t in sorted((queue / "todo").glob("*/*"))]

    async def test_accesslist_refuses_recipient_and_queues_the_rest(self):
        """control/accesslist: a clerk may not write to the list (553 with
        upstream's text) but may write to others; only those are queued."""
        self.start(control={"accesslist": f"rcpt:boss@{ME}:list@{ME}\n"})

        def steps(client):
            return client.sendmail(f"clerk@{ME}", [f"list@{ME}", f"bob@{ME}"],
                                   b"Subject: t\r\n\r\nhi\r\n")
        refused = await self.session(steps)
        [(code, text)] = refused.values()
        self.assertEqual(list(refused), [f"list@{ME}"])
        self.assertEqual(code, 553)
        self.assertTrue(text.endswith(b"sorry, sites access list denies transaction (#5.7.1)"),
                        text)
        [envelope] = self.queued()
        self.assertEqual(envelope.recipients, [f"bob@{ME}"])

    async def test_antispoofing_refuses_unauthenticated_local_sender(self):
        """variables/smtpd/ANTISPOOFING: MAIL FROM a local address without AUTH
        is 530; a foreign sender is still taken."""
        self.start(variables={"ANTISPOOFING": "1"})

        def steps(client):
            local = client.mail(f"ceo@{ME}")
            client.rset()
            foreign = client.sendmail("friend@remote.example", [f"ceo@{ME}"],
                                      b"Subject: t\r\n\r\nhi\r\n")
            return local, foreign
        local, foreign = await self.session(steps)
        self.assertEqual(local[0], 530)
        self.assertTrue(local[1].endswith(b"authentication required for local users (#5.7.1)"),
                        local)
        self.assertEqual(foreign, {})
        [envelope] = self.queued()
        self.assertEqual(envelope.sender, "friend@remote.example")

    async def test_hostaccess_refuses_domain_from_wrong_ip(self):
        """control/hostaccess: 127.0.0.1 is listed for partner.example only, so
        another domain from it gets 553."""
        self.start(control={"hostaccess": "partner.example:127.0.0.1\n"})

        def steps(client):
            other = client.mail("x@other.example")
            client.rset()
            partner = client.mail("x@partner.example")
            return other, partner
        other, partner = await self.session(steps)
        self.assertEqual(other[0], 553)
        self.assertTrue(other[1].endswith(b"sorry, your host has been denied (#5.7.1)"), other)
        self.assertEqual(partner[0], 250)

    async def test_cugmail_takes_only_active_local_users(self):
        """variables/smtpd/CUGMAIL with the home's user database: an active
        user of the virtual domain may send, a NO_SMTP user and a foreign
        sender get 553 SMTP Access denied."""
        from twisted.internet import reactor

        from indimail.vdomain.backend import SqliteBackend
        from indimail.vdomain.credchecker import close_shared_stores
        from indimail.vdomain.flags import NO_SMTP
        from indimail.vdomain.records import VUser
        from indimail.vdomain.store import VStore
        self.start(variables={"CUGMAIL": "1"})
        store = VStore(SqliteBackend(str(self.home.domains / "indimail.db")), reactor=reactor,
                       create_database=True)
        await store.open()
        await store.add_domain(ME)
        await store.add_user(VUser("alice", ME, "x", 1, 0, "", "/nonexistent/alice"))
        await store.add_user(VUser("carol", ME, "x", 1, NO_SMTP, "", "/nonexistent/carol"))
        store.close()
        self.addCleanup(close_shared_stores)

        def steps(client):
            replies = []
            for sender in (f"alice@{ME}", f"carol@{ME}", "x@remote.example"):
                replies.append(client.mail(sender))
                client.rset()
            return replies
        alice, carol, foreign = await self.session(steps)
        self.assertEqual(alice[0], 250)
        for refused in (carol, foreign):
            self.assertEqual(refused[0], 553)
            self.assertTrue(refused[1].endswith(b"SMTP Access denied (#5.7.1)"), refused)
