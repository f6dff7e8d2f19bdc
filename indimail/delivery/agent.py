"""What the local and remote delivery agents share: the Deferred entry
point that never errbacks, and their thread helper."""

from __future__ import annotations

import abc
from pathlib import Path

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from indimail.config.control import ControlFileError
from indimail.delivery.result import DEFERRAL, DeliveryError, DeliveryResult


class DeliveryAgent(abc.ABC):
    """Base of :class:`LocalDelivery` and :class:`RemoteDelivery`.

    Subclasses set :attr:`channel` and :attr:`program` (the qmail program
    whose job they do, named in reports) and implement ``_run``."""

    log = Logger()
    channel = ""
    program = ""
    reactor = None
    threadpool = None

    def deliver(self, queue, msgid: int, sender: str, recipient: str,
                qqeh: str | None = None) -> Deferred:
        """Fires with a :class:`DeliveryResult`; never errbacks."""
        return Deferred.fromCoroutine(self._deliver(queue, msgid, sender, recipient, qqeh))

    def _thread(self, f, *args) -> Deferred:
        pool = self.threadpool or self.reactor.getThreadPool()
        return threads.deferToThreadPool(self.reactor, pool, f, *args)

    async def _deliver(self, queue, msgid, sender, recipient, qqeh) -> DeliveryResult:
        try:
            return await self._run(queue.mess(msgid), sender, recipient, qqeh or "")
        except DeliveryError as exc:
            return exc.result
        except ControlFileError as exc:
            self.log.error("{channel} delivery: {error}", channel=self.channel, error=str(exc))
            return DeliveryResult(DEFERRAL, f"Unable to read control files: {exc}. (#4.3.0)")
        except Exception:
            self.log.failure("{channel} delivery to {recipient} failed",
                             channel=self.channel, recipient=recipient)
            return DeliveryResult(DEFERRAL, f"Temporary failure in {self.program}. (#4.3.0)")

    @abc.abstractmethod
    async def _run(self, mess: Path, sender: str, recipient: str, qqeh: str) -> DeliveryResult:
        """Deliver the message in *mess* to *recipient*."""
