"""qmail-queue: queue the message on fd 0 with the envelope on fd 1.

Exit status is qmail-queue's (reference §1): 0 queued, 11 address too
long, 79 envelope format error, 54 read error, 53 write error ...
"""

from __future__ import annotations

import os
import sys

from ..queue import errors
from ..queue.client import client_environment, choose_queue, read_chunks
from ..queue.enqueue import extra_recipients, qqeh_record, writer_for
from ..queue.envelope import Envelope
from ..queue.envstream import read_envelope
from ..queue.mailarchive import with_archive
from ..queue.errors import QueueError
from ..queue.received import received_line


def run(home, env, msg_fd: int = 0, env_fd: int = 1) -> int:
    """Queue one message; returns the exit code."""
    if "NULLQUEUE" in env:
        from .qmail_nullqueue import drain
        return drain(msg_fd, env_fd)
    uid = os.getuid()
    writer = None
    try:
        writer = writer_for(choose_queue(home, env), env, uid=uid, control_dir=home.control)
        writer.open(received_line(writer.pid, uid, "uid", env.get("TCPREMOTEIP") or None))
        for chunk in read_chunks(msg_fd):
            writer.write(chunk)
        sender, recipients = read_envelope(env_fd)
        extra = extra_recipients(env, home.control)
        recipients = with_archive(home.control, env, sender, extra + recipients)
        writer.commit(Envelope(sender, recipients,
                               extra_headers=qqeh_record(env.get("QQEH"))))
    except QueueError as e:
        if writer is not None:
            writer.abort()
        return e.code
    except OSError:
        if writer is not None:
            writer.abort()
        return errors.WRITE_ERROR
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        home, env = client_environment()
    except (OSError, ValueError):
        sys.exit(errors.CONFIG_ERROR)
    sys.exit(run(home, env))


if __name__ == "__main__":
    main()
