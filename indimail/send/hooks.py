"""``BOUNCEPROCESSOR``: an external program that sees each bounce first.

As indimail-mta's ``bounce_processor()``: it runs with the arguments mess
file, bounce file, bounce report, bounce sender, original recipient and
bounce recipient; exit 0 sends the bounce, exit 1 discards it, anything
else (or a crash) means "try again later".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from twisted.internet import utils

SEND = 0
DISCARD = 1


@dataclass(frozen=True)
class BounceArgs:
    """What the bounce processor is told about one bounce."""

    mess: str
    bounce: str
    report: str
    sender: str
    original_recipient: str
    recipient: str

    def argv(self) -> list[str]:
        return [self.mess, self.bounce, self.report, self.sender,
                self.original_recipient, self.recipient]


def split_bounce_text(text: bytes) -> tuple[str, str]:
    """(original recipient, report) as upstream cuts the bounce file: the
    text before the first ``:`` and what follows it, leading blanks skipped."""
    decoded = text.decode("utf-8", "surrogateescape")
    head, sep, rest = decoded.partition(":")
    if not sep:
        return decoded, "?"
    return head, rest.lstrip()


def run_bounce_processor(program: str, args: BounceArgs, env: Mapping[str, str],
                         reactor=None):
    """Run *program*; fires with its exit code (-1 when it was killed)."""
    return utils.getProcessValue(program, args.argv(), env=dict(env), reactor=reactor)
