"""ControlList's ``.sql`` form against the real MariaDB at 127.0.0.1:3306."""

from __future__ import annotations

import os
import uuid

from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.policy.lists import AddressList, ControlList, ListError, close_sql_pools

from .test_lists_smtpd import mysql


class SqlListTest(TestCase):

    async def setUp(self):
        self.database = "p1lists_" + uuid.uuid4().hex[:12]
        await threads.deferToThread(mysql, f"CREATE DATABASE {self.database}")
        self.addCleanup(threads.deferToThread, mysql,
                        f"DROP DATABASE IF EXISTS {self.database}")
        self.addCleanup(close_sql_pools)
        path = self.mktemp()
        os.makedirs(path)
        self.control = ControlFiles(path)

    def write(self, name: str, text: str) -> None:
        with open(os.path.join(self.control.directory, name), "w") as f:
            f.write(text)

    async def tables(self) -> list[str]:
        rows = await threads.deferToThread(
            mysql, "SELECT table_name FROM information_schema.tables WHERE table_schema=%s",
            self.database)
        return [r[0] for r in rows]

    async def test_table_created_and_searched(self):
        """The first lookup creates the missing table (email, timestamp, as
        upstream); rows inserted later are found, ``@domain`` rows too, in
        any case; the text form is still searched after MySQL."""
        self.write("badmailfrom.sql", f"127.0.0.1:root::{self.database}:badmailfrom\n")
        self.write("badmailfrom", "text@example.com\n")
        bmf = ControlList(self.control, "badmailfrom", reactor=reactor)
        self.assertFalse(await bmf.contains("a@example.com"))
        self.assertEqual(await self.tables(), ["badmailfrom"])
        columns = await threads.deferToThread(
            mysql, "SELECT column_name FROM information_schema.columns WHERE table_schema=%s "
            "ORDER BY ordinal_position", self.database)
        self.assertEqual([c[0] for c in columns], ["email", "timestamp"])
        await threads.deferToThread(mysql, "INSERT INTO badmailfrom (email) VALUES (%s), (%s)",
                                    "spam@example.com", "@junk.example", database=self.database)
        self.assertTrue(await bmf.contains("SPAM@example.com"))
        self.assertTrue(await bmf.contains("x@other", "@junk.example"))
        self.assertTrue(await bmf.contains("text@example.com"))
        self.assertFalse(await bmf.contains("ham@example.com"))
        family = AddressList(self.control, "badmailfrom", reactor=reactor)
        self.assertTrue(await family.match("Anyone@Junk.Example", Environment()))

    async def test_unreachable_server_is_an_error(self):
        """A ``.sql`` file naming a database that cannot be used raises ListError
        (the plugins answer 451), it is not taken as "not listed"."""
        self.write("badrcptto.sql", "127.0.0.1:root::no_such_db_p1xyz:badrcptto\n")
        with self.assertRaises(ListError):
            await ControlList(self.control, "badrcptto", reactor=reactor).contains("a@b")
