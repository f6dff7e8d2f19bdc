"""The list plugins in indimail-smtpd on a real loopback socket with a real
home and queue: badmailfrom refuses, blackholedrcpt discards, and a list
in its ``.sql`` form is served from MariaDB (127.0.0.1:3306, root)."""

from __future__ import annotations

import smtplib
import uuid
from pathlib import Path

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from indimail.config.init import init_home
from indimail.policy.lists import close_sql_pools
from tests.integration.smtp.test_smtpd import ME, serve_home

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def mysql(sql: str, *args, database: str | None = None):
    """Run one statement on the test MariaDB (blocking; call in a thread)."""
    import pymysql
    conn = pymysql.connect(database=database, autocommit=True, **MYSQL)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall()
    finally:
        conn.close()


class ListsSMTPDTest(TestCase):

    def setUp(self):
        root = Path(self.mktemp()).absolute()
        self.home = init_home(root, env={}, hostname=ME)
        serve_home(self, self.home)

    def control(self, name: str, text: str) -> None:
        (self.home.control / name).write_text(text)

    def queued(self) -> list[Path]:
        return sorted((self.home.queue_base / "queue1" / "todo").glob("*/*"))

    def send(self, sender: str, rcpts: list[str]):
        """smtplib in a thread: the refused-recipients dict, or the exception."""
        def run():
            try:
                with smtplib.SMTP("127.0.0.1", self.portno, local_hostname="client.example",
                                  timeout=60) as client:
                    return client.sendmail(sender, rcpts, b"Subject: t\r\n\r\nhello\r\n")
            except smtplib.SMTPException as exc:
                return exc
        return threads.deferToThread(run)

    async def test_badmailfrom_refused_and_blackholed_rcpt_discarded(self):
        """A badmailfrom sender gets 553 at MAIL; a blackholed recipient's
        message gets 250 from start to end but is never queued; a normal
        message still lands in the queue."""
        self.control("badmailfrom", "spammer@bad.example\n")
        self.control("blackholedrcpt", f"hole@{ME}\n")
        refused = await self.send("spammer@bad.example", [f"postmaster@{ME}"])
        self.assertIsInstance(refused, smtplib.SMTPSenderRefused)
        self.assertEqual(refused.smtp_code, 553)
        self.assertIn(b"sorry, your envelope sender has been denied (#5.7.1)", refused.smtp_error)
        self.assertEqual(await self.send("alice@good.example", [f"hole@{ME}"]), {})
        self.assertEqual(self.queued(), [])
        self.assertEqual(await self.send("alice@good.example", [f"postmaster@{ME}"]), {})
        self.assertEqual(len(self.queued()), 1)

    async def test_sql_badmailfrom_from_mariadb(self):
        """badmailfrom.sql names a MariaDB table: the table is created when
        missing, and a sender inserted into it is refused with 553."""
        database = "p1lists_" + uuid.uuid4().hex[:12]
        await threads.deferToThread(mysql, f"CREATE DATABASE {database}")
        self.addCleanup(threads.deferToThread, mysql, f"DROP DATABASE IF EXISTS {database}")
        self.addCleanup(close_sql_pools)
        self.control("badmailfrom.sql", f"127.0.0.1:root::{database}:bmf\n")
        self.assertEqual(await self.send("first@sql.example", [f"postmaster@{ME}"]), {})
        tables = await threads.deferToThread(
            mysql, "SELECT table_name FROM information_schema.tables WHERE table_schema=%s",
            database)
        self.assertEqual([t[0] for t in tables], ["bmf"])
        await threads.deferToThread(mysql, "INSERT INTO bmf (email) VALUES (%s)",
                                    "spammer@sql.example", database=database)
        refused = await self.send("Spammer@SQL.example", [f"postmaster@{ME}"])
        self.assertIsInstance(refused, smtplib.SMTPSenderRefused)
        self.assertEqual(refused.smtp_code, 553)
        self.assertEqual(len(self.queued()), 1)
