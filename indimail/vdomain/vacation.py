"""vmoduser -l: a user's vacation (upstream ``add_vacation.c``).

Setting it writes the user's ``.qmail`` as IndiMail does::

    | <bindir>/autoresponder -q <pw_dir>/.vacation.msg <pw_dir>/.vacation.dir
    <pw_dir>/Maildir/

so vdelivermail (which reads ``<pw_dir>/.qmail`` when the user has no valias
lines) runs the autoresponder, then keeps the mail.  The text goes to
``.vacation.msg`` (from a file, or stdin for ``+``); ``.vacation.dir`` keeps
the autoresponder's once-per-sender records.  ``-`` removes all three.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from indimail.config.files import write_atomic

from .admin import AdminError
from .modify import find_user

QMAIL = ".qmail"
MESSAGE = ".vacation.msg"
DIRECTORY = ".vacation.dir"
REMOVE = "-"
FROM_STDIN = "+"
QMAIL_MODE = 0o644       # INDIMAIL_QMAIL_MODE
DIR_MODE = 0o750         # INDIMAIL_DIR_MODE
PROMPT = "Enter Text for Vacation Message. Type ^D (Ctrl-D) to end\n"


def autoresponder_path(admin) -> str:
    """The autoresponder beside vdelivermail (upstream ``PREFIX/bin``)."""
    return str(Path(admin.vdelivermail).parent / "autoresponder")


def dot_qmail(autoresponder: str, pw_dir: str) -> bytes:
    """The ``.qmail`` lines add_vacation() writes."""
    return (f"| {autoresponder} -q {pw_dir}/{MESSAGE} {pw_dir}/{DIRECTORY}\n"
            f"{pw_dir}/Maildir/\n").encode()


async def vacation(admin, address: str, source: str, *, read_stdin=None,
                   out=None) -> str | None:
    """Set (*source* a file, ``+`` for *read_stdin*, or empty to keep the
    current text) or remove (``-``) the vacation of *address*.  Returns the
    message file written, if any."""
    user = await find_user(admin, address)
    home = Path(user.pw_dir)
    if source == REMOVE:
        await admin._thread(remove_vacation, home)
        return None
    text = None
    if source == FROM_STDIN:
        if out is not None:
            out.write(PROMPT)
            out.flush()
        text = await admin._thread(read_stdin)
    elif source:
        text = await admin._thread(_read_source, source)
    elif not await admin._thread(os.path.exists, home / MESSAGE):
        raise AdminError(f"{home / MESSAGE}: no vacation message")
    await admin._thread(write_vacation, home, autoresponder_path(admin), text)
    if text is None:
        return None
    if out is not None:
        out.write(f"Successfully wrote Vacation Message to {home / MESSAGE}\n")
    return str(home / MESSAGE)


def _read_source(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AdminError(f"open_read: {path}: {exc.strerror}") from None


def write_vacation(home: Path, autoresponder: str, text: bytes | None) -> None:
    """The message (when given), the records directory and the ``.qmail``,
    owned like the user's directory when we run as root (upstream chowns
    to the domain's assign uid/gid, which own that directory) (blocking)."""
    st = os.stat(home)

    def own(path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, st.st_uid, st.st_gid)
    if text is not None:
        write_atomic(home / MESSAGE, text, QMAIL_MODE)
        own(home / MESSAGE)
    records = home / DIRECTORY
    records.mkdir(mode=DIR_MODE, exist_ok=True)
    own(records)
    write_atomic(home / QMAIL, dot_qmail(autoresponder, str(home)), QMAIL_MODE)
    own(home / QMAIL)


def remove_vacation(home: Path) -> None:
    """``-l -``: the ``.qmail``, the message and the records go (blocking)."""
    for name in (QMAIL, MESSAGE):
        try:
            os.unlink(home / name)
        except FileNotFoundError:
            pass
    shutil.rmtree(home / DIRECTORY, ignore_errors=True)
