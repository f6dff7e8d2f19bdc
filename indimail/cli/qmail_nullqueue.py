"""qmail-nullqueue: accept a message like qmail-queue and throw it away.

As upstream: read fd 0 (message) and fd 1 (envelope) to EOF without
looking at them, exit 0; a read error is exit 54.
"""

from __future__ import annotations

import sys

from ..queue.client import read_chunks
from ..queue.errors import QueueError


def drain(msg_fd: int = 0, env_fd: int = 1) -> int:
    """Read the message and the envelope to EOF; 0 when both were read."""
    try:
        for fd in (msg_fd, env_fd):
            for _ in read_chunks(fd):
                pass
    except QueueError as e:
        return e.code
    return 0


def main(argv: list[str] | None = None) -> int:
    sys.exit(drain())


if __name__ == "__main__":
    main()
