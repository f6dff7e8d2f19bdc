"""The small blocking file helpers of indimail.diskio."""

import os
import shutil
import tempfile

from twisted.trial import unittest

from indimail.diskio import read_if_exists, write_file


class ReadIfExistsTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_missing_file_is_none(self):
        """A control file that is not there reads as None, not an error."""
        self.assertIsNone(read_if_exists(os.path.join(self.dir, "extraqueue")))

    def test_file_reads_whole(self):
        path = os.path.join(self.dir, "envheaders")
        write_file(path, b"X-Spam-Flag\nList-Id\n", flags=os.O_CREAT, fsync=False)
        self.assertEqual(read_if_exists(path), b"X-Spam-Flag\nList-Id\n")

    def test_other_errors_are_raised(self):
        """Only absence is forgiven: a directory in a file's place is an error
        the caller reports (the queue answers 'unable to read control files')."""
        with self.assertRaises(IsADirectoryError):
            read_if_exists(self.dir)
