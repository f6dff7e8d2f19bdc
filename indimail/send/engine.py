"""The delivery engine of one queue (qmail-send + todo-proc + qmail-clean).

Event driven: the trigger FIFO, a periodic scan and the start-up scan feed
todo processing; each message's local and remote files get a pass when
their retry time (an injected clock's ``callLater``) comes; deliveries run
under ``concurrencylocal``/``concurrencyremote`` (``DeferredSemaphore``).
A channel held by ``holdlocal``/``holdremote`` starts no delivery: its due
passes wait until a SIGHUP lifts the hold.
Every result is written to disk (bounce record, then ``D`` in place)
before anything else happens, so a crash repeats at most the deliveries in
flight.  All file work runs off the reactor thread, in few trips: todo
files and finished channels go in batches (:mod:`.batch`), a new message's
first pass uses what todo processing just wrote, and closing its last
channel file removes the message in the same trip.  ``D`` marks are not
fsynced (qmail-send's markdone() does not either); info, local/remote and
Maildir copies are.
"""

from __future__ import annotations

import inspect
from typing import Callable

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IReactorFDSet

from indimail.fastlog import Logger
from indimail.queue.bounce import (BounceConfig, bounce_envelope, bounce_record,
                                   bounce_sender, bounced_address, build_bounce,
                                   inject_bounce, read_bounce_parts, strip_vdom_prepend)
from indimail.queue.cleanup import cleanup_queue
from indimail.queue.envelope import EnvelopeError, Info, parse_recipients
from indimail.queue.layout import QueueDir
from indimail.queue.schedule import (CHANNELS, dying_report, is_dying,
                                     lifetime_for, next_retry, report_lines)
from indimail.queue.todo import TodoError, list_ids, process_todo
from indimail.send import logline
from indimail.send.disk import (FinishState, PassWork, append_bounce, close_channel,
                                finish_state, mark_done, read_pass, remove_message, set_due,
                                startup_state, unlink)
from indimail.send.config import SendConfig
from indimail.send.hooks import (DISCARD, SEND, BounceArgs, queue_with_program,
                                 run_bounce_processor, split_bounce_text)
from indimail.send.batch import BatchRunner
from indimail.send.ratelimit import make_limiter
from indimail.send.trigger import TriggerWatcher

SLEEP_SYSFAIL = 123      # qmail-send's retry delay after a system failure
TODO_INTERVAL = 60       # periodic todo scan besides the trigger
TODO_PARALLEL = 4        # todo batches in threads at once: their fsyncs share flushes
TODO_BATCH = 16          # todo files per batch (one trip to a thread)
TODO_WINDOW = 64         # todo files handed to the batches before the next scan
CLEANUP_INTERVAL = 3600  # periodic stale-file cleanup
FINISH = "done"          # timer key: finish the message (bounce, remove) again
PQADD = "pqadd"          # timer key: look at the message's files again
MARK_LATER = "mark later"  # a success whose D is written when the channel closes


def sender_for(sender: str, recipient: str) -> str:
    """qmail-send's senderadd(): VERP ``owner-@host-@[]`` becomes
    ``owner-box=host@host`` for each recipient."""
    if sender.endswith("-@[]"):
        j = sender.rfind("@", 0, len(sender) - 4)
        k = recipient.rfind("@")
        if k != -1 and j != -1:
            return (sender[:j] + recipient[:k] + "=" + recipient[k + 1:] + "@"
                    + sender[j + 1:len(sender) - 4])
    return sender


def _todo_job(queue: QueueDir, msgid: int, rewriter, fsync: bool):
    """Blocking: one todo file, as a :class:`BatchRunner` job."""
    return process_todo(queue, msgid, rewriter, fsync=fsync)


class QueueEngine(service.Service):
    """Processes, schedules and delivers the messages of one queue."""

    log = Logger()

    def __init__(self, queue: QueueDir, *, config: Callable[[], SendConfig],
                 local, remote, enqueuer, reactor=None,
                 blocking: Callable[..., defer.Deferred] | None = None,
                 label: str | None = None, watch_trigger: bool = True,
                 todo_interval: float = TODO_INTERVAL,
                 cleanup_interval: float = CLEANUP_INTERVAL, run_process=None,
                 redis_factory=None, queue_program=None, todo_parallel: int = TODO_PARALLEL,
                 todo_batch: int = TODO_BATCH):
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.queue = queue
        self.reactor = reactor
        self.agents = {"local": local, "remote": remote}
        self.enqueuer = enqueuer
        self.label = label
        self._config_factory = config
        self.config = config()
        self._blocking = blocking or self._in_thread
        self._watch_trigger = watch_trigger
        self._todo_interval = todo_interval
        self._cleanup_interval = cleanup_interval
        self._sems = {c: defer.DeferredSemaphore(self.config.concurrency[c]) for c in CHANNELS}
        self._used = {c: 0 for c in CHANNELS}
        self._delid = 0
        self._timers: dict[tuple[int, str], object] = {}
        self._running: set[tuple[int, str]] = set()
        self._held: set[tuple[int, str]] = set()
        self._finishing: set[int] = set()
        self._todo_after_finish: set[int] = set()
        self._inflight: set[defer.Deferred] = set()
        self._todo_busy = False
        self._todo_again = False
        self._todo_slots = defer.DeferredSemaphore(TODO_WINDOW)
        self._todo_inflight: set[int] = set()
        # todo files and finished channel files are handled in batches: few
        # trips to a thread however many messages arrive
        self._todo_runner = BatchRunner(self._blocking, _todo_job, parallel=todo_parallel,
                                        limit=todo_batch)
        self._closer = BatchRunner(self._blocking, close_channel, parallel=2, limit=64)
        # (msgid, channel) → the PassWork todo processing just wrote: the
        # first pass of a new message needs not read its files back
        self._fresh: dict[tuple[int, str], PassWork] = {}
        self._stopping = False
        self._loops: list[task.LoopingCall] = []
        self._trigger: TriggerWatcher | None = None
        self._ready_waiters: list[defer.Deferred] = []
        self._ready = False
        self._run_process = run_process or run_bounce_processor
        self._queue_program = queue_program or queue_with_program
        # rate control (delivery_rate()): a limiter when RATELIMIT_DIR is not
        # set empty; it acts once its directory is seen (start, periodic scan)
        self._redis_factory = redis_factory
        self._limiter = make_limiter(queue.path, self.config.env, blocking=self._blocking,
                                     redis_factory=redis_factory)
        self._rate_active = False
        self._delayed: set[tuple[int, str]] = set()
        # called with (engine, failure) when the engine can no longer work
        # (a periodic scan died): the parent replaces it, as qscheduler
        # restarts a qmail-send that exited
        self.on_crash: Callable | None = None

    @property
    def queuedesc(self) -> str:
        """The queue's name as upstream logs it (``queuedesc``)."""
        return self.label or self.queue.name

    def when_ready(self) -> defer.Deferred:
        """Fires once the start-up scan has scheduled every queued message
        (or the engine stopped first)."""
        if self._ready:
            return defer.succeed(None)
        d = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    def _set_ready(self) -> None:
        self._ready = True
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(None)

    # -- plumbing ---------------------------------------------------------

    def _in_thread(self, f, *args, **kwargs) -> defer.Deferred:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                         f, *args, **kwargs)

    def _emit(self, line: str) -> None:
        self.log.info("{line}", line=line)

    def _track(self, work, what: str, on_error: Callable[[], None] | None = None
               ) -> defer.Deferred:
        """Run *work*, keep it for stopService; an unexpected failure is
        logged and *on_error* (usually: try again later) is called."""
        d = defer.ensureDeferred(work)
        self._inflight.add(d)

        def failed(failure):
            self.log.failure("{queue}: unexpected failure in {what}", failure,
                             queue=self.queue.name, what=what)
            if on_error is not None and not self._stopping:
                on_error()

        d.addErrback(failed)
        d.addBoth(lambda _: self._inflight.discard(d))
        return d

    def _later(self, msgid: int, channel: str) -> Callable[[], None]:
        """qmail-send's pqfail: try this job again after SLEEP_SYSFAIL."""
        return lambda: self._schedule(msgid, channel, self.reactor.seconds() + SLEEP_SYSFAIL)

    def _status(self) -> None:
        self._emit(logline.status(self._used, dict(self.config.concurrency), self.label,
                                  self._stopping, len(self._delayed)))

    # -- service ----------------------------------------------------------

    def startService(self):
        super().startService()
        self._stopping = False
        self._ready = False
        self._status()
        self._track(self._blocking(self._cleanup_now, True), "start-up cleanup")
        self._track(self._startup(), "start-up scan", self._restart_later)

    def _crashed(self, failure) -> None:
        """A periodic task died: without it the queue would stall, so the
        engine reports itself dead (the parent starts a fresh one)."""
        self.log.failure("{queue}: periodic task failed", failure, queue=self.queue.name)
        if self.on_crash is not None and not self._stopping:
            self.on_crash(self, failure)

    def load(self) -> float:
        """Deliveries in progress as a percentage of the concurrency limits
        (qscheduler's queue load)."""
        limits = sum(self.config.concurrency.values())
        return 100.0 * sum(self._used.values()) / limits if limits else 0.0

    def _restart_later(self) -> None:
        """The start-up scan failed (e.g. ``info/`` unreadable): run it again."""
        call = self.reactor.callLater(SLEEP_SYSFAIL, self._restart)
        self._timers[(0, "start")] = call

    def _restart(self) -> None:
        self._timers.pop((0, "start"), None)
        if not self._stopping:
            self._track(self._startup(), "start-up scan", self._restart_later)

    async def _startup(self) -> None:
        """pqstart, then todo: schedule every message found in ``info/``, open
        the trigger, scan ``todo/``, start the periodic scans."""
        await self._refresh_rate()
        ids = await self._blocking(list_ids, self.queue, "info")
        for msgid in ids:
            if self._stopping:
                return
            try:
                await self._pqadd(msgid)
            except OSError:
                self.log.failure("{queue}: unable to stat msg {msgid}; will try again later",
                                 queue=self.queue.name, msgid=msgid)
                self._later(msgid, PQADD)()
        if self._stopping or self._loops:
            return
        if self._watch_trigger and IReactorFDSet.providedBy(self.reactor):
            self._trigger = TriggerWatcher(self.queue.trigger, self.reactor, self.kick)
            self._trigger.start()
        self.kick()
        for interval, call in ((self._todo_interval, self._todo_tick),
                               (self._cleanup_interval, self._cleanup_tick)):
            loop = task.LoopingCall(call)
            loop.clock = self.reactor
            loop.start(interval, now=False).addErrback(self._crashed)
            self._loops.append(loop)
        self._set_ready()

    def stopService(self):
        """Start nothing new; wait for every delivery and disk write in flight.
        Recipients not yet delivered keep their ``T`` and are retried later."""
        self._stopping = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._trigger is not None:
            self._trigger.close()
            self._trigger = None
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
        self._held.clear()
        self._delayed.clear()
        self._fresh.clear()
        self._set_ready()
        d = defer.DeferredList(list(self._inflight))
        d.addCallback(lambda _: service.Service.stopService(self))
        d.addCallback(lambda _: self._limiter and self._limiter.close())
        return d

    async def _refresh_rate(self) -> None:
        """Is there a rate directory (drate may create one any time)?"""
        limiter = self._limiter
        self._rate_active = bool(limiter) and await self._blocking(limiter.active)

    def reload(self) -> None:
        """SIGHUP: read the control files again; resize the concurrency limits.
        A broken control file is logged and the old settings stay."""
        old = self.config
        try:
            self.config = self._config_factory()
        except Exception:
            self.log.failure("{queue}: unable to reread controls", queue=self.queue.name)
            return
        if self._limiter is not None:
            self._limiter.close()
        self._limiter = make_limiter(self.queue.path, self.config.env, blocking=self._blocking,
                                     redis_factory=self._redis_factory)
        self._rate_active = False
        self._track(self._refresh_rate(), "rate control check")
        old_hold = dict(old.hold)
        for channel in CHANNELS:
            if self._sems[channel].limit != self.config.concurrency[channel]:
                self._sems[channel] = defer.DeferredSemaphore(self.config.concurrency[channel])
            held = self.config.hold.get(channel, False)
            if held != old_hold.get(channel, False):
                state = "temporarily held" if held else "resumed"
                self._emit(f"{channel} deliveries {state} {self.queue.name}")
                if not held:
                    self._release(channel)

    def _release(self, channel: str) -> None:
        """The hold on *channel* is lifted: every pass it kept waiting runs now."""
        now = self.reactor.seconds()
        for key in sorted(k for k in self._held if k[1] == channel):
            self._held.discard(key)
            self._schedule(key[0], channel, now)

    def held(self) -> set[tuple[int, str]]:
        """(msgid, channel) passes that are due but wait for a hold to lift."""
        return set(self._held)

    def run_now(self) -> None:
        """SIGALRM: every deferred message is retried now."""
        for call in list(self._timers.values()):
            if call.active():
                call.reset(0)
        self.kick()

    def _todo_tick(self) -> None:
        """The periodic scan; also reopens a trigger FIFO that could not be opened."""
        if self._trigger is not None and not self._trigger.watching:
            self._trigger.start()
        if self._limiter is not None and not self._stopping:
            self._track(self._refresh_rate(), "rate control check")
        self.kick()

    def _cleanup_now(self, dead_writers: bool = False) -> list[str]:
        return cleanup_queue(self.queue, self.reactor.seconds(), dead_writers=dead_writers)

    def _cleanup_tick(self) -> None:
        if not self._stopping:
            self._track(self._blocking(self._cleanup_now), "cleanup")

    # -- todo -------------------------------------------------------------

    def kick(self) -> None:
        """Scan ``todo/`` now (trigger pulled, periodic scan, start)."""
        if self._stopping:
            return
        if self._todo_busy:
            self._todo_again = True
            return
        self._track(self._todo_run(), "todo processing")

    async def _todo_run(self) -> None:
        """Preprocess every file in ``todo/``: in batches (one trip to a
        thread each), TODO_PARALLEL batches at once so their fsyncs overlap
        and the disk flushes them together; at most TODO_WINDOW files are
        handed out before the next scan."""
        self._todo_busy = True
        try:
            again = True
            while again and not self._stopping:
                self._todo_again = False
                for msgid in await self._blocking(list_ids, self.queue, "todo"):
                    if msgid in self._todo_inflight:
                        continue
                    await self._todo_slots.acquire()
                    if self._stopping:
                        self._todo_slots.release()
                        break
                    self._todo_inflight.add(msgid)
                    d = self._track(self._todo_guarded(msgid), "todo processing")
                    d.addBoth(self._todo_ended, msgid)
                again = self._todo_again
        finally:
            self._todo_busy = False

    def _todo_ended(self, result, msgid: int):
        self._todo_inflight.discard(msgid)
        self._todo_slots.release()
        return result

    async def _todo_guarded(self, msgid: int) -> None:
        try:
            await self._todo_one(msgid)
        except Exception:
            self.log.failure("{queue}: trouble processing todo {msgid}; "
                             "will try again later", queue=self.queue.name, msgid=msgid)

    def _live(self, msgid: int) -> bool:
        """Whether the engine still works on message *msgid* (a pass due,
        running or held, or finishing)."""
        if msgid in self._finishing:
            return True
        for channel in (*CHANNELS, FINISH, PQADD):
            key = (msgid, channel)
            if key in self._timers or key in self._running or key in self._held:
                return True
        return False

    async def _todo_one(self, msgid: int) -> None:
        if msgid in self._finishing:
            # The id is an inode: a new message got it while the old one's
            # info file is still being removed.  Preprocess it once that is done.
            self._todo_after_finish.add(msgid)
            return
        if self._live(msgid):
            # a scan older than this message's own todo processing saw its
            # todo file; a new message cannot have the id before it ends
            return
        try:
            result = await self._todo_runner.submit(self.queue, msgid, self.config.rewriter,
                                                    self.config.fsync)
        except TodoError as exc:
            self._emit(f"warning: {exc}")
            return
        if result is None:
            return
        env = result.envelope
        self._emit(logline.new_msg(msgid))
        self._emit(logline.info_msg(msgid, result.size, env.sender, env.pid, env.uid,
                                    self.label))
        for channel, original, _address in result.recipients:
            self._emit(logline.stat_line(channel, env.sender, original, msgid, result.size,
                                         self.label))
        channels = result.channels()
        now = self.reactor.seconds()
        info = Info(env.sender, env.extra_headers, env.env_headers)
        for channel in channels:
            if result.birth is not None and not self._stopping:
                self._fresh[(msgid, channel)] = PassWork(
                    info, result.birth, parse_recipients(result.channel_bytes(channel)))
            self._schedule(msgid, channel, now)
        if not channels:
            self._finish_soon(msgid)

    async def _pqadd(self, msgid: int) -> None:
        due = await self._blocking(startup_state, self.queue, msgid)
        if due is None:
            return
        for channel, when in due.items():
            self._schedule(msgid, channel, when)
        if not due:
            self._finish_soon(msgid)

    # -- scheduling and deliveries -----------------------------------------

    def _schedule(self, msgid: int, channel: str, when: float) -> None:
        if self._stopping:
            return
        key = (msgid, channel)
        self._held.discard(key)
        old = self._timers.pop(key, None)
        if old is not None and old.active():
            old.cancel()
        delay = max(0.0, when - self.reactor.seconds())
        self._timers[key] = self.reactor.callLater(delay, self._start_pass, msgid, channel)

    def scheduled(self) -> dict[tuple[int, str], float]:
        """(msgid, channel) → when its next pass is due (for tests and qread)."""
        return {key: call.getTime() for key, call in self._timers.items() if call.active()}

    def _start_pass(self, msgid: int, channel: str) -> None:
        key = (msgid, channel)
        self._timers.pop(key, None)
        if channel == FINISH:
            self._finish_soon(msgid)
            return
        if channel == PQADD:
            self._track(self._pqadd(msgid), f"looking at msg {msgid}", self._later(msgid, PQADD))
            return
        if self._stopping or key in self._running:
            self._fresh.pop(key, None)
            return
        if self.config.hold.get(channel, False):
            self._fresh.pop(key, None)   # read again when the hold lifts
            self._held.add(key)
            return
        self._delayed.discard(key)
        self._running.add(key)
        d = self._track(self._pass(msgid, channel), f"delivery pass of msg {msgid}",
                        self._later(msgid, channel))
        d.addBoth(lambda _: self._running.discard(key))

    async def _pass(self, msgid: int, channel: str) -> None:
        work = self._fresh.pop((msgid, channel), None)
        try:
            if work is None:
                work = await self._blocking(read_pass, self.queue, msgid, channel)
        except (OSError, EnvelopeError) as exc:
            self._emit(f"warning: trouble reading {self.queue.sub(channel, msgid)}; "
                       f"will try again later ({exc})")
            self._schedule(msgid, channel, self.reactor.seconds() + SLEEP_SYSFAIL)
            return
        if work is None:
            self._finish_soon(msgid)
            return
        now = self.reactor.seconds()
        retry = next_retry(work.birth, now, channel)
        lifetime = lifetime_for(work.info.sender, self.config.lifetime,
                                self.config.bouncelifetime)
        dying = is_dying(work.birth, now, lifetime)
        sem = self._sems[channel]
        pending = [r for r in work.records if not r.done]
        # a lone recipient's D is written with the channel's close (one trip
        # to a thread): nothing happens between its result and that write
        mark_later = len(pending) == 1 and not self._rate_active
        starts, wait = [], None
        for record in pending:
            if self._rate_active and not self._stopping:
                wait = await self._rate_wait(msgid, channel, record.address)
                if wait is not None:
                    wait += self.reactor.seconds()   # due when the rate allows
                    break
            starts.append(sem.run(self._deliver_deferred, msgid, channel, record,
                                  work.info, dying, mark_later))
        outcomes = await defer.DeferredList(starts, consumeErrors=True)
        for ok, value in outcomes:
            if not ok:  # every delivery has ended; now report the first error
                value.raiseException()
        results = [value for _ok, value in outcomes]
        if wait is not None:
            # rate exceeded: the rest of the pass goes when the rate allows
            # (slowq-send's jo.retry = recent + time_needed)
            if not self._stopping:
                key = (msgid, channel)
                self._delayed.add(key)
                self._status()
                self._schedule(msgid, channel, wait)
                await self._blocking(set_due, self.queue.sub(channel, msgid), wait)
            return
        if all(results):
            marks = [r.offset for r, done in zip(pending, results) if done is MARK_LATER]
            await self._close(msgid, channel, marks)
            return
        if None in results:
            return  # stopping: untried recipients stay due now, for the next start
        self._schedule(msgid, channel, retry)
        await self._blocking(set_due, self.queue.sub(channel, msgid), retry)

    async def _rate_wait(self, msgid: int, channel: str, address: str) -> int | None:
        """Ask the rate limiter about one recipient: None to deliver now, else
        the seconds to wait.  A limiter failure delivers (as upstream)."""
        try:
            check = await self._limiter.check(address, channel, self.reactor.seconds())
        except Exception as exc:
            self._emit(f"warning: {self.queuedesc}: failed to get delivery rate for "
                       f"{address}; proceeding to deliver ({exc})")
            return None
        if check is None:
            return None
        self._emit(check.log_line(self.queuedesc, msgid))
        return None if check.ok else check.delay

    def _deliver_deferred(self, *args) -> defer.Deferred:
        return defer.ensureDeferred(self._deliver(*args))

    async def _deliver(self, msgid: int, channel: str, record, info: Info,
                       dying: bool, mark_later: bool = False) -> bool | str | None:
        """One recipient: deliver, log, write the result.  True when marked
        D, False when deferred, None when not tried (the engine is stopping);
        with *mark_later* a success is MARK_LATER: the caller writes its D
        when it closes the channel file."""
        if self._stopping:
            return None
        self._delid += 1
        delid = self._delid
        self._used[channel] += 1
        self._emit(logline.starting(delid, msgid, channel, record.address, self.label))
        self._status()
        try:
            try:
                result = self.agents[channel].deliver(
                    self.queue, msgid, sender_for(info.sender, record.address),
                    record.address, info.extra_headers)
                if inspect.isawaitable(result):
                    result = await result
                status, report = result.status, result.report
            except Exception:
                self.log.failure("delivery {delid} raised", delid=delid)
                status, report = "deferral", "Unable to run the delivery agent. (#4.3.0)"
            report = report_lines(report)
            if status == "deferral" and dying:
                status, report = "failure", dying_report(report)
            if status not in ("success", "deferral", "failure"):
                self._emit(f"delivery {delid}: report mangled, will defer:{self._tail()}")
                return False
            self._emit(logline.delivery(delid, status, report, self.label))
            if status == "deferral":
                return False
            if mark_later and status == "success":
                return MARK_LATER
            await self._record(msgid, channel, record, status, report)
            return True
        finally:
            self._used[channel] -= 1
            self._status()

    def _tail(self) -> str:
        return f" {self.label}" if self.label else ""

    async def _record(self, msgid: int, channel: str, record, status: str,
                      report: str) -> None:
        """Bounce record first (failures), then the ``D`` in place."""
        fsync = self.config.fsync
        if status == "failure":
            original = strip_vdom_prepend(record.address,
                                          self.config.rewriter.virtualdomains)
            await self._blocking(append_bounce, self.queue.bounce(msgid),
                                 bounce_record(original, report), fsync=fsync)
        await self._blocking(mark_done, self.queue.sub(channel, msgid), record.offset)

    # -- finishing a message ----------------------------------------------

    async def _close(self, msgid: int, channel: str, marks: list[int]) -> None:
        """Every recipient of the channel is done: write the pending ``D``
        marks, remove the channel file and, when it was the message's last
        and no bounce waits, the message too, in one trip to a thread.

        The id is held in ``_finishing`` meanwhile: once ``mess`` is gone a
        new message may get its inode, and its todo file then waits until
        ``end msg`` of this one is logged (upstream logs it first)."""
        remove = msgid not in self._finishing
        if remove:
            self._finishing.add(msgid)
        try:
            last, state = await self._closer.submit(self.queue, msgid, channel, marks,
                                                    mark_done, remove)
        except BaseException:
            if remove:
                self._finished(None, msgid)
            raise
        if not remove:
            return   # the message is being finished already
        if last and state is not None and state.removed:
            self._emit(logline.end_msg(msgid, self.label))
        self._finished(None, msgid)
        if last and state is not None and not state.removed:
            self._finish_soon(msgid, state)   # a bounce to send first

    def _finish_soon(self, msgid: int, state: FinishState | None | bool = True) -> None:
        """Finish the message; *state* is its FinishState when the caller
        just read it (None: nothing to finish), True to read it now."""
        if msgid in self._finishing:
            return
        self._finishing.add(msgid)
        d = self._track(self._finish(msgid, state), f"finishing msg {msgid}",
                        self._later(msgid, FINISH))
        d.addBoth(self._finished, msgid)

    def _finished(self, result, msgid: int):
        self._finishing.discard(msgid)
        if msgid in self._todo_after_finish:
            self._todo_after_finish.discard(msgid)
            self.kick()
        return result

    async def _finish(self, msgid: int, state: FinishState | None | bool = True) -> None:
        """messdone(): inject the bounce, then remove info, intd and mess."""
        if state is True:
            state = await self._blocking(finish_state, self.queue, msgid)
        if state is None:
            return
        try:
            if state.bounce:
                await self._bounce(msgid, state.info, state.birth)
        except Exception:
            self.log.failure("{queue}: trouble injecting bounce message, will try later",
                             queue=self.queue.name)
            self._later(msgid, FINISH)()
            return
        # logged before the files go, as upstream: once mess is removed its
        # inode (the id) may be reused by a new message
        self._emit(logline.end_msg(msgid, self.label))
        await self._blocking(remove_message, self.queue, msgid)

    async def _bounce(self, msgid: int, info: Info, birth: float) -> None:
        config: BounceConfig = self.config.bounce
        bounce_path = self.queue.bounce(msgid)
        parts = await self._blocking(read_bounce_parts, bounce_path, self.queue.mess(msgid),
                                     config.bouncemaxbytes)
        if parts is None:
            return
        text, body, size = parts
        sender = bounce_sender(info.sender)
        envelope = bounce_envelope(sender, config)
        if envelope is None:
            kind = "triple" if sender == "#@[]" else "double"
            self._emit(f"{kind} bounce: discarding {bounce_path}{self._tail()}")
        else:
            data = build_bounce(sender=sender, msgid=msgid, birth=birth, bounce_text=text,
                                message=body, message_size=size, config=config,
                                now=self.reactor.seconds(), bounced=bounced_address(text))
            if await self._bounce_processor(msgid, text, *envelope) == SEND:
                env = self.config.bounce_env(sender)
                program = (env if env is not None else self.config.env).get("BOUNCEQUEUE")
                if program:
                    # the bounce goes to BOUNCEQUEUE's program, not our writer
                    newid = await self._queue_program(program, data, *envelope,
                                                      env=env or self.config.env,
                                                      reactor=self.reactor)
                else:
                    newid = await inject_bounce(self.enqueuer, data, *envelope, env=env)
                self._emit(logline.bounce_msg(msgid, newid, self.label))
            else:
                self._emit(f"delete bounce: discarding {bounce_path}{self._tail()}")
        await self._blocking(unlink, bounce_path)

    async def _bounce_processor(self, msgid: int, text: bytes, bounce_sender: str,
                                recipient: str) -> int:
        """SEND or DISCARD from ``$BOUNCEPROCESSOR`` (SEND when unset); any
        other exit raises, so the bounce is tried again later."""
        program = self.config.env.get("BOUNCEPROCESSOR")
        if not program:
            return SEND
        original, report = split_bounce_text(text)
        args = BounceArgs(str(self.queue.mess(msgid)), str(self.queue.bounce(msgid)), report,
                          bounce_sender, original, recipient)
        code = await self._run_process(program, args, self.config.env, reactor=self.reactor)
        self._emit(f"bounce processor sender <{bounce_sender}> recipient <{recipient}> "
                   f"messfn <{args.mess}> bouncefn <{args.bounce}> exit={code}{self._tail()}")
        if code not in (SEND, DISCARD):
            raise RuntimeError(f"bounce processor {program} exited {code}")
        return code
