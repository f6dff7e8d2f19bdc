"""``twistd indimail`` options: --smtp-workers."""

from __future__ import annotations

from unittest import mock

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from indimail import tap


class SmtpWorkersOption(SynchronousTestCase):

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_auto_is_one_per_core(self):
        """auto (the default) gives one worker per core, none on a single core."""
        with mock.patch("os.cpu_count", return_value=4):
            self.assertEqual(self.parse()["smtp-workers"], 4)
        with mock.patch("os.cpu_count", return_value=1):
            self.assertEqual(self.parse("--smtp-workers", "auto")["smtp-workers"], 0)

    def test_number_and_errors(self):
        """A number is taken as is; a negative or non-number is a usage error."""
        self.assertEqual(self.parse("--smtp-workers", "3")["smtp-workers"], 3)
        for bad in ("-1", "many"):
            with self.assertRaises(usage.UsageError):
                self.parse("--smtp-workers", bad)
