"""The home directory: where every file of one IndiMail installation lives.

A home holds ``control/``, ``users/``, ``tcp/``, ``certs/``, ``queue/``,
``domains/`` and ``variables/<service>/``.  IndiMail's own overrides
(``CONTROLDIR``, ``QUEUE_BASE``) still win when they are set in the
environment handed to :class:`Home`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


def default_home_path(env: Mapping[str, str] | None = None) -> Path:
    """``$INDIMAIL_HOME``, else ``~/.indimail``."""
    env = os.environ if env is None else env
    value = env.get("INDIMAIL_HOME")
    if value:
        return Path(value).expanduser()
    return Path("~/.indimail").expanduser()


@dataclass(frozen=True)
class Home:
    """Paths of one installation.  Pure: creating one touches no file."""

    path: Path
    control_override: Path | None = None
    queue_base_override: Path | None = None

    @classmethod
    def from_env(cls, path: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None) -> "Home":
        """A home at *path* (or the default), honouring CONTROLDIR/QUEUE_BASE."""
        env = os.environ if env is None else env
        base = Path(path).expanduser() if path else default_home_path(env)
        control = env.get("CONTROLDIR")
        queue_base = env.get("QUEUE_BASE")
        return cls(base.absolute(),
                   Path(control) if control else None,
                   Path(queue_base) if queue_base else None)

    def __post_init__(self):
        # asked for every queued message (envheaders, extraqueue, mailarchive,
        # the queue's place): made once
        object.__setattr__(self, "_control", self.control_override or self.path / "control")
        object.__setattr__(self, "_queue_base",
                           self.queue_base_override or self.path / "queue")

    @property
    def control(self) -> Path:
        return self._control

    @property
    def users(self) -> Path:
        return self.path / "users"

    @property
    def tcp(self) -> Path:
        return self.path / "tcp"

    @property
    def certs(self) -> Path:
        return self.path / "certs"

    @property
    def queue_base(self) -> Path:
        return self._queue_base

    @property
    def domains(self) -> Path:
        return self.path / "domains"

    @property
    def variables(self) -> Path:
        return self.path / "variables"

    def variables_for(self, service: str) -> Path:
        return self.variables / service

    def is_initialised(self) -> bool:
        """True once ``indimail init`` has written ``control/me``."""
        return (self.control / "me").exists()
