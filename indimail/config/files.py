"""Atomic file writes: a reader sees the old file or the new one, never half.

Every file ``indimail`` writes goes through a temporary file in the same
directory, is fsynced, then renamed (replace) or hard-linked (create only
when absent) into place, the way ``tcprules`` and ``qmail-cdb`` do it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, mode)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def write_atomic(path: os.PathLike | str, data: bytes, mode: int = 0o644) -> None:
    """Replace *path* with *data* atomically."""
    path = Path(path)
    temp = _write_temp(path, data, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_new(path: os.PathLike | str, data: bytes, mode: int = 0o644) -> bool:
    """Create *path* with *data* unless it exists; True when it was written.

    The link(2) into place fails on an existing name, so a file that appears
    meanwhile is never overwritten either.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        return False
    temp = _write_temp(path, data, mode)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
    return True
