"""Wake the delivery engine: one byte into ``lock/trigger`` (a FIFO).

Opened non-blocking, like qmail's ``triggerpull()``: when nobody reads the
FIFO (ENXIO) or it is missing, the message is still queued and the engine
finds it on its next scan, so no error is raised.
"""

from __future__ import annotations

import os
from pathlib import Path


def trigger_pull(path: Path | str) -> bool:
    """Write one NUL byte to the trigger FIFO; True when a reader got it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        os.write(fd, b"\0")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
