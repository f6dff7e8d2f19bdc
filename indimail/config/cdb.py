"""Writing cdb files: ``qmail-cdb`` for control files, and a generic writer.

``qmail-cdb NAME`` turns a control file of one key per line into
``NAME.cdb``: keys lower-cased, trailing blanks removed, ``#`` lines and
blank lines skipped, every value empty.  The text file stays where it is
(upstream renames it to ``NAME.bak``; we keep it so ``showctl`` and editors
still find it — the cdb is looked up first anyway).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable

import cdblib

from .files import write_atomic


def cdb_bytes(records: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A cdb image holding *records* in order (duplicate keys are kept)."""
    buf = io.BytesIO()
    writer = cdblib.Writer(buf)
    for key, value in records:
        writer.put(key, value)
    writer.finalize()
    return buf.getvalue()


def write_cdb(path: os.PathLike | str, records: Iterable[tuple[bytes, bytes]],
              mode: int = 0o644) -> None:
    """Write a cdb atomically (temp file + rename)."""
    write_atomic(path, cdb_bytes(records), mode)


def control_keys(data: bytes) -> list[bytes]:
    """The keys ``qmail-cdb`` makes of a control file's bytes."""
    keys = []
    for line in data.split(b"\n"):
        line = line.lower().rstrip(b" \t")
        if line and not line.startswith(b"#"):
            keys.append(line)
    return keys


def make_control_cdb(control_dir: os.PathLike | str, name: str) -> Path:
    """Compile ``control_dir/name`` to ``name.cdb``; returns the cdb's path."""
    source = Path(control_dir) / name
    target = source.with_name(name + ".cdb")
    data = source.read_bytes()
    write_cdb(target, ((key, b"") for key in control_keys(data)))
    return target
