"""Fixtures for the delivery tests: a home with assign, a queued message,
and a fake enqueuer of the contract's interface."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import defer

from indimail.config.control import ControlFiles
from indimail.config.home import Home
from indimail.queue.layout import QueueDir

MESSAGE = b"From: bob@example.org\nSubject: hi\n\nFrom the start\nbody\n"


def make_home(base: str, assign: str | None = None) -> Home:
    """A home with ``users/assign`` for virtual domain example.com."""
    home = Home(Path(base).absolute())
    for sub in ("control", "users", "domains/example.com", "queue/queue1"):
        os.makedirs(home.path / sub, exist_ok=True)
    os.chmod(home.domains / "example.com", 0o755)
    if assign is None:
        assign = (f"+example.com-:example.com:{os.getuid()}:{os.getgid()}:"
                  f"{home.domains / 'example.com'}:-::\n.\n")
    (home.users / "assign").write_text(assign)
    (home.control / "me").write_text("mx.example.com\n")
    return home


def queue_message(home: Home, data: bytes = MESSAGE, msgid: int = 4242) -> tuple[QueueDir, int]:
    queue = QueueDir(home.queue_base / "queue1")
    path = queue.mess(msgid)
    os.makedirs(path.parent, exist_ok=True)
    path.write_bytes(data)
    return queue, msgid


def write_dotqmail(home: Home, name: str, content: str, mode: int = 0o600) -> Path:
    path = home.domains / "example.com" / name
    path.write_text(content)
    os.chmod(path, mode)
    return path


def control(home: Home) -> ControlFiles:
    return ControlFiles(home.control)


class FakeMessage:
    """An IncomingMessage stand-in that keeps what it was given."""

    def __init__(self, owner: "FakeEnqueuer", invoked: str):
        self.owner = owner
        self.invoked = invoked
        self.data = b""
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def finish(self, sender, recipients, extra_headers=None):
        if self.owner.fail is not None:
            return defer.fail(self.owner.fail)
        self.sender, self.recipients = sender, list(recipients)
        self.owner.finished.append(self)
        return defer.succeed(self.owner.next_id)

    def abort(self):
        self.aborted = True
        return defer.succeed(None)


class FakeEnqueuer:
    """Enqueuer stand-in: ``begin()`` hands out FakeMessages."""

    def __init__(self, next_id: int = 99, fail: Exception | None = None):
        self.next_id = next_id
        self.fail = fail
        self.finished: list[FakeMessage] = []

    def begin(self, env=None, *, invoked="uid", remote_ip=None, uid=None):
        return FakeMessage(self, invoked)
