"""Fakes for SMTP tests: a message sink with the Enqueuer's interface.

:class:`FakeSink` records every message begun; :class:`FakeMessage` keeps
the bytes written and lets a test decide when (and how) ``finish`` fires,
so ordering and back-pressure can be checked without a disk.
"""

from __future__ import annotations

from twisted.internet import defer


class FakeMessage:
    """One message: ``write``/``finish``/``abort``/``pending_bytes``/``wait_for_drain``."""

    def __init__(self, sink: "FakeSink", env, invoked: str, remote_ip: str | None):
        self.sink = sink
        self.env = env
        self.invoked = invoked
        self.remote_ip = remote_ip
        self.chunks: list[bytes] = []
        self.pending_bytes = 0
        self.high_water = sink.high_water
        self.finished: tuple[str, list[str]] | None = None
        self.aborted = False
        self.finish_d: defer.Deferred | None = None
        self._drain: list[defer.Deferred] = []

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def write(self, data: bytes) -> None:
        assert self.finished is None and not self.aborted, "write after end"
        self.chunks.append(bytes(data))
        if self.sink.hold_writes:
            self.pending_bytes += len(data)

    def wait_for_drain(self) -> defer.Deferred:
        if self.pending_bytes <= self.high_water // 4:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drain.append(d)
        return d

    def drain(self) -> None:
        """The test's disk caught up: pending bytes are written."""
        self.pending_bytes = 0
        waiters, self._drain = self._drain, []
        for d in waiters:
            d.callback(None)

    def finish(self, sender: str, recipients: list[str], extra_headers=None) -> defer.Deferred:
        self.finished = (sender, list(recipients))
        self.finish_d = defer.Deferred()
        if self.sink.auto_finish is not None:
            result = self.sink.auto_finish
            if isinstance(result, Exception):
                self.finish_d.errback(result)
            else:
                self.finish_d.callback(result)
        return self.finish_d

    def abort(self) -> defer.Deferred:
        self.aborted = True
        return defer.succeed(None)


class FakeSink:
    """Stands in for :class:`~indimail.queue.enqueue.Enqueuer`.

    *auto_finish*: an id (or an exception) every ``finish`` fires with at
    once; None leaves ``finish_d`` for the test to fire.  *hold_writes*
    makes written bytes stay pending until ``drain()``."""

    def __init__(self, auto_finish=4242, high_water: int = 1 << 20, fail_begin=None):
        self.auto_finish = auto_finish
        self.high_water = high_water
        self.hold_writes = False
        self.fail_begin = fail_begin
        self.messages: list[FakeMessage] = []

    def begin(self, env=None, *, invoked: str = "uid", remote_ip: str | None = None,
              uid: int | None = None) -> FakeMessage:
        if self.fail_begin is not None:
            raise self.fail_begin
        message = FakeMessage(self, env, invoked, remote_ip)
        self.messages.append(message)
        return message
