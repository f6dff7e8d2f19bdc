"""The BOUNCEPROCESSOR program is really run, with upstream's arguments."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from indimail.send.hooks import BounceArgs, run_bounce_processor, split_bounce_text

from .helpers import tempdir


class BounceProcessorRunTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_program_run(self):
        """The program gets six arguments and the environment; its exit code
        is the result."""
        base = tempdir(self)
        out = os.path.join(base, "args")
        script = os.path.join(base, "bp")
        with open(script, "w") as f:
            f.write(f'#!/bin/sh\nprintf "%s|" "$@" "$MARK" > {out}\nexit 1\n')
        os.chmod(script, 0o755)
        args = BounceArgs("m", "b", "report text", "", "<a@b>", "s@x")
        code = yield run_bounce_processor(script, args, {"MARK": "on"}, reactor=reactor)
        self.assertEqual(code, 1)
        with open(out) as f:
            self.assertEqual(f.read(), "m|b|report text||<a@b>|s@x|on|")

    def test_split_bounce_text(self):
        """The original recipient is the text before the first colon."""
        self.assertEqual(split_bounce_text(b"<a@b>:\nno mailbox\n\n"), ("<a@b>", "no mailbox\n\n"))
        self.assertEqual(split_bounce_text(b"odd"), ("odd", "?"))
