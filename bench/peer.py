"""What both benchmark peers share: a context manager that starts the
server and always stops it, even when starting failed half-way."""

from __future__ import annotations


class ManagedPeer:
    """Subclasses define ``start()`` and ``stop()``; ``stop()`` must cope
    with a server that never fully started."""

    def start(self) -> None:
        raise TypeError(f"{type(self).__name__} must define start()")

    def stop(self) -> None:
        raise TypeError(f"{type(self).__name__} must define stop()")

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
