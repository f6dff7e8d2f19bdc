"""Where on the disk the queue's files are made (ext4 block groups).

ext4 puts a new file's inode in its parent directory's block group (the
first group of the directory's flex group that has a free inode), and a
sub-directory near its parent.  A queue made in one go therefore has every
``mess intd todo info local remote`` sub-directory, and so every queue
file, in one group.

On ext4 *without a journal* every inode allocation scans the group's free
inodes from the start and steps over each one freed in the last 5 seconds
(5 minutes while its inode table block is still dirty), one buffer-cache
lookup each.  A queue frees several inodes per message, so at a few hundred
messages a second each new queue file steps over thousands of them: measured
on such a file system, that scan was a tenth of the delivery process's CPU.

Two things spread the work over many groups, so each group sees a small
share of the churn:

* :func:`mark_top` sets the Orlov "top directory" flag (``chattr +T``) on
  the queue and its split directories before their sub-directories are
  made, so the allocator scatters those sub-directories over the disk the
  way it scatters top-level directories;
* :class:`SpreadCreator` makes the message's inode as an unnamed file
  (``O_TMPFILE``) in a split directory chosen round-robin, so the message
  inodes do not all come from ``pid/``'s group.  The caller names it in
  ``pid/`` at once (:func:`link_unnamed`): the queue's files and names are
  exactly as before.

Both are best effort: on a file system without the flag or ``O_TMPFILE``
nothing changes.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import struct

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000
_LONG = struct.Struct("l")

O_TMPFILE = getattr(os, "O_TMPFILE", 0)
# errors that say nothing about the file system: the next message tries again
_PASSING = {errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.EDQUOT, errno.EINTR, errno.ENOMEM}


def _flags(fd: int) -> int:
    return _LONG.unpack(fcntl.ioctl(fd, FS_IOC_GETFLAGS, _LONG.pack(0)))[0]


def _with_directory(path, action) -> bool:
    """*action(fd)* on directory *path*; False when it cannot be opened or
    the file system refuses the flags ioctl."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return action(fd)
    except OSError:
        return False
    finally:
        os.close(fd)


def _set_top(fd: int) -> bool:
    flags = _flags(fd)
    if not flags & FS_TOPDIR_FL:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, _LONG.pack(flags | FS_TOPDIR_FL))
    return True


def mark_top(path) -> bool:
    """Set the Orlov top-directory flag on directory *path*; False where the
    file system has no such flag (or we may not set it)."""
    return _with_directory(path, _set_top)


def is_top(path) -> bool:
    """Whether directory *path* carries the top-directory flag."""
    return _with_directory(path, lambda fd: bool(_flags(fd) & FS_TOPDIR_FL))


class SpreadCreator:
    """Makes unnamed files round-robin over a list of directories.

    :meth:`open` returns a descriptor of a new, unnamed regular file, or
    None when none can be made (the caller then creates a named file as
    before).  After a failure that comes from the file system or the
    directory this creator stops trying; running out of descriptors, space
    or memory does not count.  :func:`link_unnamed` gives the file its
    first name.
    """

    def __init__(self, directories: list[str]):
        self._dirs = itertools.cycle(directories) if directories else None
        self.enabled = (bool(O_TMPFILE) and self._dirs is not None
                        and os.path.isdir("/proc/self/fd"))

    def open(self, mode: int) -> int | None:
        if not self.enabled:
            return None
        try:
            return os.open(next(self._dirs), os.O_WRONLY | O_TMPFILE, mode)
        except OSError as exc:
            if exc.errno not in _PASSING:
                self.enabled = False   # this file system (or directory) cannot
            return None


_root_fd: int | None = None


def link_unnamed(fd: int, path) -> None:
    """Give the unnamed file open on *fd* the name *path*: ``linkat`` of
    ``/proc/self/fd/N`` with ``AT_SYMLINK_FOLLOW``, which needs no
    privilege.  Raises ``OSError`` (``FileExistsError`` when *path* exists).

    ``os.link`` calls plain ``link()`` (which would link the magic symlink
    itself: EXDEV) unless it is given a directory descriptor; an absolute
    source ignores it, so any directory will do."""
    global _root_fd
    if _root_fd is None:
        _root_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=_root_fd, follow_symlinks=True)
