"""``indimail-send``: a MultiService with one :class:`QueueEngine` per queue.

The engines share the delivery agents and the Enqueuer used for bounces.
SIGHUP re-reads control files and variables, SIGALRM retries every
deferred message now (qmail-send's signals); handlers are installed only
for the process-wide reactor.  Like qscheduler, the service replaces an
engine that died (a second later), runs the rate-controlled ``slowq``
queue when it exists, and in dynamic mode (``QUEUE_DYNAMIC``) grows the
number of queues with the load (:mod:`indimail.send.dynamic`).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Mapping

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorThreads

from typing import Callable

from indimail.config.control import ControlFiles, control_recheck
from indimail.config.home import Home
from indimail.fastlog import Logger
from indimail.queue.layout import QueueDir, configured_queues, split_from_env
from indimail.send.config import SendConfig
from indimail.send.engine import QueueEngine

NAME = "indimail-send"
SLOWQ = "slowq"
RESTART_DELAY = 1.0   # qmail-daemon sleeps a second before restarting a queue
# the delivery engine's own worker threads: todo processing (TODO_PARALLEL
# per queue) and concurrencylocal Maildir writes fsync side by side, so the
# file system commits them together; the reactor's pool (10) would queue them
POOL_MIN, POOL_MAX = 4, 64


class SendService(service.MultiService):
    """The delivery engines of one home; handles qmail-send's signals."""

    log = Logger()

    def __init__(self, reactor, *, install_signals: bool = False, enqueuer=None,
                 engine_factory: Callable[..., QueueEngine] | None = None,
                 restart_delay: float = RESTART_DELAY, threadpool=None,
                 refreshers: tuple[Callable[[], None], ...] = ()):
        super().__init__()
        self.threadpool = threadpool   # ours: started and stopped with the service
        # SIGHUP: what caches control files (looked at once a CONTROL_RECHECK)
        self.refreshers = refreshers
        self.setName(NAME)
        self.reactor = reactor
        self.install_signals = install_signals
        self._own_enqueuer = enqueuer   # made for this service: closed on stop
        self._old_handlers: dict[int, object] = {}
        self.engine_factory = engine_factory
        self.restart_delay = restart_delay
        self._restarts: dict[str, object] = {}
        self.restarted: list[str] = []   # queue names, in restart order

    def add_queue(self, queue: QueueDir, label: str | None = None) -> QueueEngine:
        """Make (with the engine factory) and start the engine of *queue*."""
        engine = self.engine_factory(queue, label)
        engine.setName(queue.name)
        engine.on_crash = self._engine_died
        engine.setServiceParent(self)
        return engine

    def _engine_died(self, engine: QueueEngine, failure) -> None:
        """qscheduler's restart(): stop what is left of the engine and start a
        fresh one for the queue after RESTART_DELAY."""
        name = engine.queue.name
        self.log.info("{line}", line=f"alert: qscheduler: queue {name} died; restarting")
        if engine.parent is self:
            d = defer.maybeDeferred(engine.disownServiceParent)
        else:
            d = defer.succeed(None)

        def again(_):
            if self.running and name not in self._restarts:
                self._restarts[name] = self.reactor.callLater(
                    self.restart_delay, self._restart, engine.queue, engine.label)
        d.addCallback(again)
        d.addErrback(lambda f: self.log.failure("qscheduler: stopping {queue} failed", f,
                                                queue=name))

    def _restart(self, queue: QueueDir, label: str | None) -> None:
        self._restarts.pop(queue.name, None)
        if self.running:
            self.add_queue(queue, label)
            self.restarted.append(queue.name)

    @property
    def engines(self) -> list[QueueEngine]:
        return [s for s in self if isinstance(s, QueueEngine)]

    def when_ready(self):
        """Fires once every engine has scheduled the messages already queued."""
        return defer.gatherResults([e.when_ready() for e in self.engines], consumeErrors=True)

    def reload(self) -> None:
        """SIGHUP: every engine reads its control files again."""
        self.log.info("status: reloading control files")
        for refresh in self.refreshers:
            refresh()
        for engine in self.engines:
            engine.reload()

    def run_now(self) -> None:
        """SIGALRM: retry every deferred message now."""
        for engine in self.engines:
            engine.run_now()

    def startService(self):
        if self.threadpool is not None and not self.threadpool.started:
            self.threadpool.start()
        if self.install_signals:
            for signum, action in ((signal.SIGHUP, self.reload),
                                   (signal.SIGALRM, self.run_now)):
                self._old_handlers[signum] = signal.signal(
                    signum, lambda *_a, _act=action: self.reactor.callFromThread(_act))
        super().startService()

    def stopService(self):
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        for signum, old in self._old_handlers.items():
            signal.signal(signum, old)
        self._old_handlers.clear()
        d = defer.maybeDeferred(super().stopService)
        d.addBoth(self._close_own)
        return d

    def _close_own(self, result):
        """After the engines drained (bounces and forwards are written, no
        file work is left): close the Enqueuer and the thread pool we made."""
        if self._own_enqueuer is not None:
            self._own_enqueuer.close()
        if self.threadpool is not None and self.threadpool.started:
            self.threadpool.stop()
        return result


def make_send_service(home: Home, *, reactor=None, env: Mapping[str, str] | None = None,
                      local=None, remote=None, enqueuer=None,
                      install_signals: bool | None = None, blocking=None,
                      dynamic: bool | None = None, redis_factory=None,
                      engine_options: Mapping | None = None) -> SendService:
    """The ``indimail-send`` service for *home*: a child per configured queue
    (``configured_queues`` of the ``send`` variables), plus ``slowq`` when
    that queue exists.  *local*, *remote* and *enqueuer* default to the real
    delivery agents and queue writer; *blocking* replaces the thread runner
    of the file work (tests); *dynamic* (default: ``QUEUE_DYNAMIC``) grows
    the queues with the load; *engine_options* go to every QueueEngine."""
    from indimail.config.envdir import service_environment

    if install_signals is None:
        install_signals = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    senv = service_environment(home, "send", base=env)
    # qmail-send reads its control files at start and on SIGHUP; here a
    # file's stamp is looked at once a CONTROL_RECHECK, not per delivery
    control = ControlFiles(home.control, recheck=control_recheck(senv))
    pool = None
    if blocking is None and IReactorThreads.providedBy(reactor):
        from indimail.queue.enqueue import QueueThreadPool
        pool = QueueThreadPool(minthreads=POOL_MIN, maxthreads=POOL_MAX, name=NAME)
        blocking = _in_pool(reactor, pool)
    own_enqueuer = None
    if enqueuer is None:
        from indimail.queue.enqueue import Enqueuer
        enqueuer = own_enqueuer = Enqueuer(home, senv, reactor=reactor)
    if local is None:
        from indimail.delivery.local import LocalDelivery
        local = LocalDelivery(home, control, enqueuer, reactor=reactor, env=senv,
                              threadpool=pool)
    cache = None
    if remote is None:
        from indimail.delivery.conncache import ConnectionCache
        from indimail.delivery.remote import RemoteDelivery
        cache = ConnectionCache.from_env(senv, reactor)
        remote = RemoteDelivery(home, control, reactor=reactor, env=senv, threadpool=pool,
                                connection_cache=cache)
    def make_engine(queue: QueueDir, label: str | None) -> QueueEngine:
        def config(queue_name=queue.name):
            return SendConfig.load(control, service_environment(home, "send", base=env),
                                   queue_name)
        return QueueEngine(queue, config=config, local=local, remote=remote,
                           enqueuer=enqueuer, reactor=reactor, blocking=blocking,
                           label=label, redis_factory=redis_factory,
                           **dict(engine_options or {}))

    refreshers = [control.refresh]
    if hasattr(local, "refresh"):
        refreshers.append(local.refresh)
    top = SendService(reactor, install_signals=install_signals, enqueuer=own_enqueuer,
                      engine_factory=make_engine, threadpool=pool,
                      refreshers=tuple(refreshers))
    if cache is not None:   # says QUIT on the idle connections at stop
        cache.setName("remote-connections")
        cache.setServiceParent(top)
    if dynamic is None:
        from indimail.send.dynamic import dynamic_enabled
        dynamic = dynamic_enabled(senv) and not senv.get("QUEUEDIR")
    queues = configured_queues(senv, home.queue_base)
    slowq = None
    if not senv.get("QUEUEDIR"):
        base = Path(senv.get("QUEUE_BASE") or home.queue_base)
        candidate = QueueDir(base / SLOWQ, split_from_env(senv))
        if candidate.path.is_dir() and candidate not in queues:
            slowq = candidate
    several = len(queues) > 1 or slowq is not None or dynamic
    for queue in queues:
        top.add_queue(queue, queue.name if several else None)
    if slowq is not None:
        top.add_queue(slowq, SLOWQ)   # slowq-send always names its queue
    if dynamic:
        from indimail.send.dynamic import DynamicQueues
        grower = DynamicQueues(top, senv, Path(senv.get("QUEUE_BASE") or home.queue_base),
                               reactor=reactor, blocking=blocking or _in_thread(reactor))
        grower.setName("qscheduler")
        grower.setServiceParent(top)
    return top


def _in_thread(reactor):
    return _in_pool(reactor, None)


def _in_pool(reactor, pool):
    """A ``blocking`` runner: *f* in *pool* (None: the reactor's pool)."""
    from twisted.internet import threads

    def run(f, *args, **kwargs):
        return threads.deferToThreadPool(reactor, pool if pool is not None else reactor.getThreadPool(),
                                         f, *args, **kwargs)
    return run
