"""The over-quota warning (upstream ``MailQuotaWarn``).

``QUOTAWARN1`` .. ``QUOTAWARN10`` hold percentages.  After a delivery, when
the mailbox is fuller than one of them (tried from QUOTAWARN10 down) and the
``Maildir/QuotaWarn`` stamp is missing or older than a week, the stamp is
touched and the user is warned: ``OVERQUOTA_CMD`` (default
``<home>/libexec/overquota.sh``) runs with upstream's seven arguments
``user@domain maildir usage count quota maxcount percent``; without such a
program the warning that upstream's sample overquota.sh mails is put
straight into the Maildir (it must arrive even though the box is full).
"""

from __future__ import annotations

import email.utils
import os
from pathlib import Path
from typing import Mapping

from .maildirsize import Usage
from .quota import Quota

STAMP = "QuotaWarn"
WEEK = 7 * 86400


def warn_percent(env: Mapping[str, str], quota: Quota, usage: Usage) -> int | None:
    """The QUOTAWARNn percentage the usage exceeds (QUOTAWARN10 first), or None."""
    if quota.size == 0:
        return None
    for n in range(10, 0, -1):
        text = env.get(f"QUOTAWARN{n}")
        if text is None:
            continue
        try:
            percent = int(text.strip())
        except ValueError:
            continue
        if not 0 <= percent <= 100:
            continue
        if usage.size * 100 // quota.size > percent or \
                (quota.count and usage.count * 100 // quota.count > percent):
            return percent
    return None


def stamp_due(maildir: Path, now: float) -> bool:
    """Whether the last warning (the QuotaWarn stamp) is missing or a week old."""
    try:
        return now - os.stat(maildir / STAMP).st_mtime > WEEK
    except FileNotFoundError:
        return True


def touch_stamp(maildir: Path, now: float) -> None:
    path = maildir / STAMP
    path.touch(mode=0o644, exist_ok=True)
    os.utime(path, (now, now))


def warning_message(address: str, domain: str, usage: Usage, quota: Quota, percent: int,
                    now: float) -> bytes:
    """The text of overquota.sh's seven-argument case."""
    return (f"From: postmaster@{domain}\n"
            f"To: {address}\n"
            f"Subject: [Warning] Your Mail Box is {percent}% Full\n"
            f"Date: {email.utils.formatdate(now, localtime=True)}\n"
            "\n"
            f"Dear {address}\n"
            f"Your Mailbox is {percent}% full.\n"
            "Please download the mails or delete the unwanted mails\n"
            "to avoid the uninterruptive mail delivery\n"
            f"Your Quota is: {quota.size}S,{quota.count}C\n"
            f"Your Usage is: {usage.size}S,{usage.count}C\n"
            "\n"
            "Regards,\n"
            "\n").encode()


def overquota_command(env: Mapping[str, str]) -> str | None:
    """OVERQUOTA_CMD, else ``$INDIMAIL_HOME/libexec/overquota.sh`` when executable."""
    command = env.get("OVERQUOTA_CMD")
    if command is None and env.get("INDIMAIL_HOME"):
        command = str(Path(env["INDIMAIL_HOME"]) / "libexec" / "overquota.sh")
    if command and os.access(command.split()[0], os.X_OK):
        return command
    return None


def warn_args(address: str, maildir: Path, usage: Usage, quota: Quota, percent: int) -> list[str]:
    """Upstream's seven arguments of the warning call."""
    return [address, str(maildir) + "/", str(usage.size), str(usage.count), str(quota.size),
            str(quota.count), str(percent)]


def deliver_warning(writer, maildir: Path, text: bytes) -> None:
    """Put the warning into the Maildir (blocking)."""
    writer.deliver(maildir, text, os.devnull)


__all__ = ["warn_percent", "stamp_due", "touch_stamp", "warning_message", "overquota_command",
           "warn_args", "deliver_warning"]
