"""CHECKRECIPIENT and CHECKRELAY (POP-before-SMTP) through indimail-smtpd on a
real loopback socket, with users in the home's SQLite store."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.config.tcprules import compile_tcprules
from indimail.vdomain.admin import Admin
from indimail.vdomain.credchecker import close_shared_stores
from indimail.vdomain.relaytable import open_relay
from indimail.vdomain.store import open_store
from tests.integration.smtp.test_smtpd import serve_home

DOMAIN = "vhost.example"


class StoreChecksTest(TestCase):
    timeout = 120

    async def start(self, variables: dict[str, str]) -> None:
        """A home with DOMAIN and alice in SQLite, a non-relay tcp.smtp, served."""
        self.home = init_home(Path(self.mktemp()).absolute(), env={}, hostname="mx.example")
        store = await open_store(self.home, {}, reactor=reactor)
        self.addCleanup(lambda: defer.maybeDeferred(store.close))
        admin = Admin(self.home, store, reactor=reactor)
        await admin.add_domain(DOMAIN)
        await admin.add_user(f"alice@{DOMAIN}", "pw-alice-1")
        self.store = store
        source = self.home.tcp / "tcp.smtp"
        source.write_text(":allow\n")
        compile_tcprules(source, source.with_name("tcp.smtp.cdb"))
        vdir = self.home.variables_for("smtpd")
        vdir.mkdir(parents=True, exist_ok=True)
        for name, value in variables.items():
            (vdir / name).write_text(value + "\n")
        serve_home(self, self.home)
        self.addCleanup(lambda: defer.ensureDeferred(_close_shared()))

    def session(self, steps):
        def run():
            with smtplib.SMTP("127.0.0.1", self.portno, timeout=60) as client:
                client.ehlo("client.example")
                return steps(client)
        return threads.deferToThread(run)

    async def test_checkrecipient_refuses_unknown_virtual_user(self):
        """CHECKRECIPIENT=1: RCPT to a user the store does not hold is 550
        (after the 5-second penalty); an existing user is taken."""
        await self.start({"CHECKRECIPIENT": "1"})

        def steps(client):
            client.mail("friend@remote.example")
            known = client.rcpt(f"alice@{DOMAIN}")
            started = time.monotonic()
            unknown = client.rcpt(f"nobody@{DOMAIN}")
            return known, unknown, time.monotonic() - started
        known, unknown, waited = await self.session(steps)
        self.assertEqual(known[0], 250)
        self.assertEqual(unknown[0], 550)
        self.assertIn(b"is absent on this domain", unknown[1])
        self.assertGreaterEqual(waited, 4.5)

    async def test_without_checkrecipient_unknown_users_are_taken(self):
        """Without CHECKRECIPIENT the store is not asked: any local address is 250."""
        await self.start({})

        def steps(client):
            client.mail("friend@remote.example")
            return client.rcpt(f"nobody@{DOMAIN}")
        self.assertEqual((await self.session(steps))[0], 250)

    async def test_pop_before_smtp_lets_a_recent_login_relay(self):
        """CHECKRELAY: an IP in the relay table (a POP3/IMAP login within
        RELAY_CLEAR_MINUTES) may relay; without the row it may not."""
        await self.start({"CHECKRELAY": "1", "RELAY_CLEAR_MINUTES": "30"})

        def steps(client):
            client.mail(f"alice@{DOMAIN}")
            return client.rcpt("someone@elsewhere.example")
        self.assertEqual((await self.session(steps))[0], 553)
        await open_relay(self.store, f"alice@{DOMAIN}", "127.0.0.1", time.time())
        self.assertEqual((await self.session(steps))[0], 250)


async def _close_shared():
    await defer.maybeDeferred(close_shared_stores)
