"""End to end with Dovecot: vchkpass as Dovecot's checkpassword passdb.

vadddomain/vadduser create a virtual user, swaks delivers a message through
the project's SMTP service (twistd indimail), and Python's imaplib and
poplib read it back as that user from a private Dovecot instance
(Debian's dovecot-imapd/dovecot-pop3d) on loopback test ports.  The IMAP
login also opens POP-before-SMTP relaying in the relay table.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import pwd
import sys
import time
from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from indimail.config.home import Home
from indimail.testing import ChildProcess, free_port, source_root
from indimail.vdomain.relaytable import relay_allowed
from indimail.vdomain.store import open_store

from tests.e2e.support import MailSystem

DOVECOT = "/usr/sbin/dovecot"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = /dev/stderr
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = checkpassword
  args = {wrapper}
}}
userdb {{
  driver = prefetch
}}
service auth {{
  user = root
}}
service auth-worker {{
  user = root
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""

WRAPPER = """#!/bin/sh
INDIMAIL_HOME='{home}'
PYTHONPATH='{pythonpath}'
export INDIMAIL_HOME PYTHONPATH
exec '{python}' -m indimail.cli.vchkpass "$@"
"""

MAIL_USER = "mail"   # Dovecot will not run a mailbox as root: the Maildir's owner


def imap_fetch(port: int, user: str, password: str) -> list[bytes]:
    """Log in over IMAP and return every message of INBOX."""
    conn = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        conn.login(user, password)
        conn.select("INBOX")
        _, data = conn.search(None, "ALL")
        messages = []
        for num in data[0].split():
            _, parts = conn.fetch(num, "(RFC822)")
            messages.append(parts[0][1])
        return messages
    finally:
        try:
            conn.logout()
        except Exception:
            pass


def imap_login_fails(port: int, user: str, password: str) -> bool:
    conn = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        conn.login(user, password)
    except imaplib.IMAP4.error:
        return True
    finally:
        conn.shutdown()
    return False


def pop3_retrieve(port: int, user: str, password: str) -> list[bytes]:
    """Log in over POP3 and return every message, lines joined by CRLF."""
    conn = poplib.POP3("127.0.0.1", port, timeout=60)
    try:
        conn.user(user)
        conn.pass_(password)
        count, _ = conn.stat()
        return [b"\r\n".join(conn.retr(n)[1]) for n in range(1, count + 1)]
    finally:
        conn.quit()


class DovecotTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def setUp(self):
        self.system = MailSystem(reactor)
        self.addCleanup(lambda: defer.ensureDeferred(self.system.teardown()))
        home = str(self.system.home)
        for argv in (("indimail", "init", "--home", home),
                     ("vadddomain", "example.org", "pw"),
                     ("vadduser", "bob@example.org", "secret")):
            out, err, code = yield defer.ensureDeferred(self.system.run(*argv))
            self.assertEqual(code, 0, (argv, out, err))
        self.bob = self.system.home / "domains" / "example.org" / "bob"
        yield defer.ensureDeferred(self.system.start())

    def start_dovecot(self) -> defer.Deferred:
        root = self.system.root / "dovecot"
        for sub in ("run", "state"):
            (root / sub).mkdir(parents=True)
        wrapper = root / "vchkpass-wrapper"
        wrapper.write_text(WRAPPER.format(home=self.system.home, python=sys.executable,
                                          pythonpath=source_root() or ""))
        wrapper.chmod(0o755)
        self.imap_port, self.pop3_port = free_port(), free_port()
        config = root / "dovecot.conf"
        config.write_text(CONFIG.format(root=root, wrapper=wrapper, imap_port=self.imap_port,
                                        pop3_port=self.pop3_port))
        self.dovecot = ChildProcess(reactor, [DOVECOT, "-F", "-c", str(config)],
                                    env={"PATH": "/usr/sbin:/usr/bin:/bin"})
        self.addCleanup(self.dovecot.kill)
        return self.dovecot.wait_output(r"starting up for imap, pop3", timeout=60)

    def hand_mailbox_to_mail_user(self):
        """Give the Maildir to an unprivileged owner, and let it reach the directory."""
        entry = pwd.getpwnam(MAIL_USER)
        for dirpath, dirnames, filenames in os.walk(self.bob):
            for name in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
                os.chown(name, entry.pw_uid, entry.pw_gid)
        for parent in self.bob.parents:
            parent.chmod(parent.stat().st_mode | 0o011)
            if parent == Path("/tmp") or parent == Path(self.system.root).parent:
                break

    @defer.inlineCallbacks
    def test_delivered_mail_is_read_over_imap_and_pop3(self):
        """Mail sent through SMTP to bob@example.org is read back over IMAP and POP3
        by Dovecot logging bob in with vchkpass; a wrong password is refused and
        the IMAP login opens relaying for 127.0.0.1 in the relay table."""
        out, err, code = yield defer.ensureDeferred(self.system.swaks(
            "--from", "carol@remote.test", "--to", "bob@example.org",
            "--header", "Subject: through dovecot", "--body", "hello bob via dovecot"))
        self.assertEqual(code, 0, out + err)
        yield defer.ensureDeferred(self.system.wait_files(
            self.bob / "Maildir" / "new", complete=b"hello bob via dovecot"))
        self.hand_mailbox_to_mail_user()
        yield self.start_dovecot()

        try:
            messages = yield threads.deferToThread(imap_fetch, self.imap_port,
                                                   "bob@example.org", "secret")
        except Exception as exc:
            self.fail(f"IMAP failed: {exc}\nDovecot log:\n{self.dovecot.output}")
        self.assertEqual(len(messages), 1, messages)
        self.assertIn(b"Subject: through dovecot", messages[0])
        self.assertIn(b"hello bob via dovecot", messages[0])

        popped = yield threads.deferToThread(pop3_retrieve, self.pop3_port,
                                             "bob@example.org", "secret")
        self.assertEqual(len(popped), 1, popped)
        self.assertIn(b"hello bob via dovecot", popped[0])

        self.assertTrue((yield threads.deferToThread(
            imap_login_fails, self.imap_port, "bob@example.org", "wrong")))

        store = yield open_store(Home(self.system.home), {}, reactor=reactor)
        self.addCleanup(store.close)
        self.assertTrue((yield relay_allowed(store, "127.0.0.1", time.time())))
