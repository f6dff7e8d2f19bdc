"""Temporary directories for the config tests (removed after each test)."""

import shutil
import tempfile
from pathlib import Path


def tempdir(case) -> Path:
    """A fresh directory that *case* removes when the test ends."""
    path = Path(tempfile.mkdtemp(prefix="indimail-config-test-"))
    case.addCleanup(shutil.rmtree, path, True)
    return path


def setenv(case, name: str, value: str) -> None:
    """Set a process environment variable for the duration of *case*."""
    import os

    old = os.environ.get(name)
    os.environ[name] = value

    def restore():
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old

    case.addCleanup(restore)
