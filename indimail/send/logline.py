"""qmail-send's log lines, word for word, so qmailanalog and admins' habits
keep working (``qmail-send.c``, ``qsutil.c``).

*label* is the queue name; like indimail-mta it is appended to the lines
that carry it upstream, and only when several queues run.
"""

from __future__ import annotations

import re


_UNSAFE = re.compile(r"[^!-$&-~]")   # all but printable ASCII without % and space


def logsafe(text: str) -> str:
    """qsutil's logsafe: newline → ``/``; space, ``%``, controls, non-ASCII → ``_``."""
    if "\n" in text:
        text = text.replace("\n", "/")
    return _UNSAFE.sub("_", text)


def _tail(label: str | None) -> str:
    return f" {label}" if label else ""


def new_msg(msgid: int) -> str:
    return f"new msg {msgid}"


def info_msg(msgid: int, size: int, sender: str, pid: int, uid: int,
             label: str | None = None) -> str:
    return (f"info msg {msgid}: bytes {size} from <{logsafe(sender)}> "
            f"qp {pid} uid {uid}{_tail(label)}")


def stat_line(channel: str, sender: str, recipient: str, msgid: int, size: int,
              label: str | None = None) -> str:
    """qsutil's log_stat line, one per recipient of a new message."""
    return (f"{channel}: {sender if len(sender) > 1 else '<>'} {recipient or '<>'} "
            f"{msgid} {size} bytes{_tail(label)}")


def starting(delid: int, msgid: int, channel: str, recipient: str,
             label: str | None = None) -> str:
    return f"starting delivery {delid}: msg {msgid} to {channel} {logsafe(recipient)}{_tail(label)}"


def delivery(delid: int, status: str, report: str, label: str | None = None) -> str:
    """``delivery N: success|deferral|failure: <report>``."""
    return f"delivery {delid}: {status}: {logsafe(report)}{_tail(label)}"


def status(used: dict[str, int], limits: dict[str, int], label: str | None = None,
           exiting: bool = False, delayed: int = 0) -> str:
    """``delayed jobs=N``: passes held back by rate control (slowq-send)."""
    line = (f"status: local {used['local']}/{limits['local']} "
            f"remote {used['remote']}/{limits['remote']}"
            f"{f' delayed jobs={delayed}' if delayed else ''}{_tail(label)}")
    return line + (" exitasap" if exiting else "")


def end_msg(msgid: int, label: str | None = None) -> str:
    return f"end msg {msgid}{_tail(label)}"


def bounce_msg(msgid: int, qp: int, label: str | None = None) -> str:
    return f"bounce msg {msgid} qp {qp}{_tail(label)}"
