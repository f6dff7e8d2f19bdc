"""vmoduser -l's files: upstream's .qmail lines, the message, the records
directory, their modes and owner, and their removal."""

import os
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from indimail.vdomain import vacation as V


class VacationFilesTests(SynchronousTestCase):
    def setUp(self):
        self.home = Path(self.mktemp()).absolute()
        (self.home / "Maildir").mkdir(parents=True)

    def test_written_and_removed(self):
        """The .qmail runs the autoresponder then keeps the mail (0644); '-'
        removes the .qmail, the message and the records."""
        V.write_vacation(self.home, "/opt/bin/autoresponder", b"away\n")
        self.assertEqual((self.home / ".qmail").read_text(),
                         f"| /opt/bin/autoresponder -q {self.home}/.vacation.msg "
                         f"{self.home}/.vacation.dir\n{self.home}/Maildir/\n")
        self.assertEqual((self.home / ".vacation.msg").read_bytes(), b"away\n")
        self.assertEqual(os.stat(self.home / ".qmail").st_mode & 0o777, 0o644)
        self.assertEqual(os.stat(self.home / ".vacation.dir").st_mode & 0o777, 0o750)
        (self.home / ".vacation.dir" / "1.2.carol@remote.test").touch()
        V.write_vacation(self.home, "/opt/bin/autoresponder", None)
        self.assertEqual((self.home / ".vacation.msg").read_bytes(), b"away\n",
                         "no new text keeps the old one")
        V.remove_vacation(self.home)
        self.assertEqual(sorted(p.name for p in self.home.iterdir()), ["Maildir"])
        V.remove_vacation(self.home)

    def test_owner_follows_the_user_directory(self):
        """As root the files get the owner of the user's directory (the
        domain's uid/gid), so the delivery can keep its records there."""
        if os.geteuid() != 0:
            raise SkipTest("needs root to chown")
        os.chown(self.home, 65534, 65534)
        V.write_vacation(self.home, "/opt/bin/autoresponder", b"away\n")
        for name in (".qmail", ".vacation.msg", ".vacation.dir"):
            st = os.stat(self.home / name)
            self.assertEqual((st.st_uid, st.st_gid), (65534, 65534), name)
