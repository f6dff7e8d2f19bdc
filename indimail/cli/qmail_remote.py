"""qmail-remote: deliver the message on stdin to remote recipients, the
built-in remote delivery as a command (so ``QMAILREMOTE`` scripts can end
with ``exec qmail-remote "$@"`` as the IndiMail documents show).

Arguments: ``host sender qqeh size recipient...``.  Output is qmail-remote's
report format: a recipient report per recipient (``r`` accepted, ``h``
permanent, ``s`` temporary, with the text) and then one message report
(``K``, ``Z`` or ``D``), each ended by a NUL byte.  Each recipient is
delivered in its own transaction, routed by its own domain (``host`` is
what qmail-rspawn passes: the recipients' domain).  ``QMAILREMOTE`` is
ignored here, so a hook cannot call itself.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from ..config.control import ControlFiles
from ..delivery.result import DEFERRAL, FAILURE, SUCCESS
from ..queue.client import client_environment

USAGE = b"DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0"


class _Stdin:
    """The queue interface RemoteDelivery reads the message through."""

    def __init__(self, path: Path):
        self.path = path

    def mess(self, _msgid: int) -> Path:
        return self.path


def message_path(tmpdir: str) -> tuple[Path, bool]:
    """(path of the message, whether it is a spooled copy to remove)."""
    if stat.S_ISREG(os.fstat(0).st_mode):
        return Path("/proc/self/fd/0"), False
    fd, name = tempfile.mkstemp(prefix="qmail-remote.", dir=tmpdir)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out)
    return Path(name), True


def reports(results) -> bytes:
    """The recipient reports and the message report for *results*."""
    out = []
    for result in results:
        if result.status == SUCCESS:
            out.append(b"r\0")
        else:
            letter = b"h" if result.status == FAILURE else b"s"
            out.append(letter + result.report.encode("utf-8", "replace") + b"\n\0")
    accepted = [r for r in results if r.status == SUCCESS]
    if accepted:
        out.append(b"K" + accepted[-1].report.encode("utf-8", "replace") + b"\n\0")
    elif any(r.status == DEFERRAL for r in results):
        out.append(b"Z\0")
    else:
        out.append(b"D\0")
    return b"".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 5:
        sys.stdout.buffer.write(USAGE)
        sys.stdout.flush()
        sys.exit(0)
    _host, sender, qqeh, _size, *recipients = argv
    home, env = client_environment()
    env = env.unset("QMAILREMOTE")
    path, spooled = message_path(env.get("TMPDIR") or tempfile.gettempdir())

    from twisted.internet import defer, task

    async def run(reactor):
        from ..delivery.remote import RemoteDelivery
        agent = RemoteDelivery(home, ControlFiles(home.control), reactor=reactor, env=env)
        results = []
        for recipient in recipients:
            results.append(await agent.deliver(_Stdin(path), 0, sender, recipient,
                                               qqeh or None))
        sys.stdout.buffer.write(reports(results))
        sys.stdout.flush()

    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    finally:
        if spooled:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
