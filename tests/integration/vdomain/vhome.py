"""A home whose store the v* commands find as the tests' own code does:
SQLite in the home, or a fresh MariaDB database named in ``control/host.mysql``
(``MysqlHome``).  The path stays short: IndiMail's pw_dir is char(156)."""

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, threads

from indimail.config.init import init_home
from indimail.vdomain.store import open_store

from .helpers import MYSQL, mysql_backend, run_sql

CLEARED = ("MYSQL_HOST", "INDIMAIL_HOME", "CONTROLDIR", "QUEUE_BASE", "QUEUEDIR",
           "POST_HANDLE")


class StoreHome:
    """Mixin: ``self.root``, ``self.home``, ``self.env`` (for commands) and
    ``self.store`` (opened, closed at cleanup)."""

    @defer.inlineCallbacks
    def make_home(self, prefix: str):
        root = tempfile.mkdtemp(prefix=prefix)
        self.addCleanup(shutil.rmtree, root, True)
        self.root = Path(root)
        self.home = init_home(self.root / "home", hostname="mx.test",
                              env={"QUEUE_COUNT": "1"})
        self.env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        self.env["INDIMAIL_HOME"] = str(self.home.path)
        yield self.prepare_database()
        self.store = yield open_store(self.home, self.env)
        self.addCleanup(self.store.close)

    def prepare_database(self):
        return defer.succeed(None)


class StoreCalls:
    """Mixin: ``store_call`` opens the home's store as a command would, calls
    one of its methods and closes it (needs ``self.home`` and ``self.env``)."""

    @defer.inlineCallbacks
    def store_call(self, method, *args):
        store = yield open_store(self.home, self.env)
        try:
            return (yield getattr(store, method)(*args))
        finally:
            store.close()


class MysqlHome:
    """Mixin (before the one making the home): the store is a new MariaDB
    database named in ``control/host.mysql``."""

    def prepare_database(self):
        self.backend = mysql_backend(self)
        (self.home.control / "host.mysql").write_text(MYSQL + "\n")
        self.env["MYSQL_DATABASE"] = self.backend.database
        self.env["MYSQL_PASSWD"] = ""
        return threads.deferToThread(run_sql, self.backend,
                                     [f"CREATE DATABASE {self.backend.database}"],
                                     with_database=False)
