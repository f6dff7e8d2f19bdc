"""What every command-line queue client shares: its environment and the
blocking enqueue.

Like IndiMail's ``set_environment()``, a client reads the envdir
``control/defaultqueue/`` on top of the process environment, so an admin
sets QUEUE_BASE, QUEUE_COUNT, CONFSPLIT, QQEH ... once for all clients.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

from ..config.environment import Environment
from ..config.home import Home
from . import errors
from .enqueue import extra_recipients, qqeh_record, writer_for
from .envelope import Envelope
from .errors import QueueError
from .layout import QueueDir, select_queue
from .mailarchive import with_archive
from .received import received_line

CHUNK = 64 * 1024


def client_environment(environ: Mapping[str, str] | None = None) -> tuple[Home, Environment]:
    """The home (``INDIMAIL_HOME`` ...) and the client's environment."""
    base = dict(os.environ if environ is None else environ)
    home = Home.from_env(env=base)
    defaultqueue = home.control / "defaultqueue"
    if defaultqueue.is_dir():
        from ..config.envdir import read_envdir
        env = read_envdir(defaultqueue, base)
        home = Home.from_env(env=env)
        return home, env
    return home, Environment(base)


def choose_queue(home: Home, env: Mapping[str, str]) -> QueueDir:
    """The queue a new message from this client goes to."""
    return select_queue(env, home.queue_base)


def enqueue_blocking(home: Home, env: Mapping[str, str], sender: str,
                     recipients: list[str], chunks: Iterable[bytes], *,
                     invoked: str = "uid", remote_ip: str | None = None,
                     uid: int | None = None, extra_headers: str | None = None) -> int:
    """Queue a message read from *chunks*; returns its id (0 under
    NULLQUEUE).  Raises :class:`QueueError`."""
    if "NULLQUEUE" in env:
        for _ in chunks:
            pass
        return 0
    uid = os.getuid() if uid is None else uid
    if remote_ip is None:
        remote_ip = env.get("TCPREMOTEIP") or None
    writer = writer_for(choose_queue(home, env), env, uid=uid, control_dir=home.control)
    writer.open(received_line(writer.pid, uid, invoked, remote_ip))
    try:
        for chunk in chunks:
            writer.write(chunk)
        extra = extra_recipients(env, home.control)
    except QueueError:
        writer.abort()
        raise
    except OSError:
        writer.abort()
        raise QueueError(errors.READ_ERROR) from None
    if extra_headers is None:
        extra_headers = env.get("QQEH")
    recipients = with_archive(home.control, env, sender, extra + list(recipients))
    envelope = Envelope(sender, recipients,
                        extra_headers=qqeh_record(extra_headers))
    return writer.commit(envelope)


def read_chunks(fd: int, size: int = CHUNK) -> Iterable[bytes]:
    """Read *fd* to EOF in chunks; a read error is exit 54."""
    while True:
        try:
            data = os.read(fd, size)
        except OSError:
            raise QueueError(errors.READ_ERROR) from None
        if not data:
            return
        yield data
