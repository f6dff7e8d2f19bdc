"""count_delivered_to reads only the header, with plain reads, and counts
the lines equal to ours exactly as qmail-local's loop check does; the
diskio reader returns a descriptor's whole content."""

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from indimail.delivery.local import CHUNK, count_delivered_to
from indimail.diskio import read_to_end

LINE = b"Delivered-To: alice@example.com\n"


class CountDeliveredToTests(SynchronousTestCase):
    def message(self, data: bytes) -> str:
        fd, path = tempfile.mkstemp()
        os.write(fd, data)
        os.close(fd)
        self.addCleanup(os.unlink, path)
        return path

    def test_counts_header_lines_only(self):
        """Our line in the header counts, other Delivered-To lines and the
        same line in the body do not."""
        path = self.message(LINE + b"Delivered-To: bob@example.com\n" + LINE
                            + b"Subject: x\n\n" + LINE)
        self.assertEqual(count_delivered_to(path, LINE), 2)

    def test_line_split_across_reads(self):
        """A header line that straddles two reads is joined before it is compared."""
        filler = b"X-Fill: " + b"a" * (CHUNK - len(b"X-Fill: ") - 10) + b"\n"
        path = self.message(filler + LINE + LINE + b"\nbody\n")
        self.assertEqual(count_delivered_to(path, LINE), 2)

    def test_endless_first_line(self):
        """A header of one long line without an end counts nothing."""
        path = self.message(b"X" * (3 * CHUNK + 17))
        self.assertEqual(count_delivered_to(path, LINE), 0)

    def test_long_line_then_ours(self):
        """A line longer than ours is no match, even spread over reads; ours after it is."""
        path = self.message(b"X-Long: " + b"b" * (2 * CHUNK) + b"\n" + LINE + b"\n")
        self.assertEqual(count_delivered_to(path, LINE), 1)

    def test_last_line_without_newline_is_not_counted(self):
        """The header ends at a last line without its newline (qmail-local's getln)."""
        path = self.message(LINE + LINE[:-1])
        self.assertEqual(count_delivered_to(path, LINE), 1)

    def test_empty_header(self):
        """A message that starts with the empty line has no header."""
        path = self.message(b"\n" + LINE)
        self.assertEqual(count_delivered_to(path, LINE), 0)

    def test_missing_file_raises(self):
        self.assertRaises(OSError, count_delivered_to, "/nonexistent/mess", LINE)


class ReadToEndTests(SynchronousTestCase):
    def test_reads_everything_from_position(self):
        fd, path = tempfile.mkstemp()
        self.addCleanup(os.unlink, path)
        data = bytes(range(256)) * 1000
        os.write(fd, data)
        os.lseek(fd, 10, os.SEEK_SET)
        try:
            self.assertEqual(read_to_end(fd, 5), data[10:])
            self.assertEqual(read_to_end(fd), b"")
        finally:
            os.close(fd)
