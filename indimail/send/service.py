"""``indimail-send``: a MultiService with one :class:`QueueEngine` per queue.

The engines share the delivery agents and the Enqueuer used for bounces.
SIGHUP re-reads control files and variables, SIGALRM retries every
deferred message now (qmail-send's signals); handlers are installed only
for the process-wide reactor.
"""

from __future__ import annotations

import signal
from typing import Mapping

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from indimail.config.control import ControlFiles
from indimail.config.home import Home
from indimail.queue.layout import configured_queues
from indimail.send.config import SendConfig
from indimail.send.engine import QueueEngine

NAME = "indimail-send"


class SendService(service.MultiService):
    """The delivery engines of one home; handles qmail-send's signals."""

    log = Logger()

    def __init__(self, reactor, *, install_signals: bool = False, enqueuer=None):
        super().__init__()
        self.setName(NAME)
        self.reactor = reactor
        self.install_signals = install_signals
        self._own_enqueuer = enqueuer   # made for this service: closed on stop
        self._old_handlers: dict[int, object] = {}

    @property
    def engines(self) -> list[QueueEngine]:
        return [s for s in self if isinstance(s, QueueEngine)]

    def when_ready(self):
        """Fires once every engine has scheduled the messages already queued."""
        return defer.gatherResults([e.when_ready() for e in self.engines], consumeErrors=True)

    def reload(self) -> None:
        """SIGHUP: every engine reads its control files again."""
        self.log.info("status: reloading control files")
        for engine in self.engines:
            engine.reload()

    def run_now(self) -> None:
        """SIGALRM: retry every deferred message now."""
        for engine in self.engines:
            engine.run_now()

    def startService(self):
        if self.install_signals:
            for signum, action in ((signal.SIGHUP, self.reload),
                                   (signal.SIGALRM, self.run_now)):
                self._old_handlers[signum] = signal.signal(
                    signum, lambda *_a, _act=action: self.reactor.callFromThread(_act))
        super().startService()

    def stopService(self):
        for signum, old in self._old_handlers.items():
            signal.signal(signum, old)
        self._old_handlers.clear()
        d = defer.maybeDeferred(super().stopService)
        d.addBoth(self._close_enqueuer)
        return d

    def _close_enqueuer(self, result):
        """After the engines drained: bounces and forwards are written."""
        if self._own_enqueuer is not None:
            self._own_enqueuer.close()
        return result


def make_send_service(home: Home, *, reactor=None, env: Mapping[str, str] | None = None,
                      local=None, remote=None, enqueuer=None,
                      install_signals: bool | None = None, blocking=None) -> SendService:
    """The ``indimail-send`` service for *home*: a child per configured queue
    (``configured_queues`` of the ``send`` variables).  *local*, *remote* and
    *enqueuer* default to the real delivery agents and queue writer;
    *blocking* replaces the thread runner of the file work (tests)."""
    from indimail.config.envdir import service_environment

    if install_signals is None:
        install_signals = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    senv = service_environment(home, "send", base=env)
    control = ControlFiles(home.control)
    own_enqueuer = None
    if enqueuer is None:
        from indimail.queue.enqueue import Enqueuer
        enqueuer = own_enqueuer = Enqueuer(home, senv, reactor=reactor)
    if local is None:
        from indimail.delivery.local import LocalDelivery
        local = LocalDelivery(home, control, enqueuer, reactor=reactor, env=senv)
    if remote is None:
        from indimail.delivery.remote import RemoteDelivery
        remote = RemoteDelivery(home, control, reactor=reactor, env=senv)
    top = SendService(reactor, install_signals=install_signals, enqueuer=own_enqueuer)
    queues = configured_queues(senv, home.queue_base)
    several = len(queues) > 1
    for queue in queues:
        def config(queue_name=queue.name):
            return SendConfig.load(control, service_environment(home, "send", base=env),
                                   queue_name)
        engine = QueueEngine(queue, config=config, local=local, remote=remote,
                             enqueuer=enqueuer, reactor=reactor, blocking=blocking,
                             label=queue.name if several else None)
        engine.setName(queue.name)
        engine.setServiceParent(top)
    return top
