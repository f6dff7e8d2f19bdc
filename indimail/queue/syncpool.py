"""A thread pool stand-in that runs the work inline, at once.

For tests of code built on :class:`~indimail.queue.enqueue.Enqueuer` that
drive a ``Clock`` or ``MemoryReactor`` (which cannot run threads): pass
``threadpool=SynchronousThreadPool()`` and every queue Deferred fires
synchronously, with the same files on disk as in production.
"""

from __future__ import annotations

from twisted.python.failure import Failure


class SynchronousThreadPool:
    """Implements the part of ``ThreadPool`` the Enqueuer uses."""

    started = True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def callInThreadWithCallback(self, onResult, func, *args, **kw) -> None:
        try:
            result = func(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)
