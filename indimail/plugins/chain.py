"""Run one hook across the loaded plugins, in order, with timeouts."""

from __future__ import annotations

import inspect

from twisted.internet import defer
from twisted.python.failure import Failure

from indimail.fastlog import Logger, debug_observed
from .api import CONTINUE, HOOKS, Result, Verdict, denysoft

log = Logger()

DEFAULT_TIMEOUT = 30.0
TIMEOUT_TEXT = "Sorry, a policy check timed out (#4.3.0)"
FAILURE_TEXT = "Sorry, there is a local system failure (#4.3.0)"


class PluginChain:
    """The plugins of one service, grouped per hook in run order."""

    def __init__(self, plugins, clock, timeout: float = DEFAULT_TIMEOUT):
        self.plugins = list(plugins)
        self.clock = clock
        self.timeout = timeout
        ordered = sorted(self.plugins, key=lambda p: getattr(p, "order", 500))
        self._by_hook = {
            hook: [p for p in ordered if callable(getattr(p, "hook_" + hook, None))]
            for hook in HOOKS}
        # each plugin's bound hook, found once: every command of every session
        # walks its hook's list (a hook_* replaced later on a plugin is not seen)
        self._calls = {hook: [getattr(p, "hook_" + hook) for p in plugins]
                       for hook, plugins in self._by_hook.items()}
        self._deadlines = Deadlines(clock)

    def names(self, hook: str) -> list[str]:
        """The plugin names that run for *hook*, in order."""
        return [_name(p) for p in self._by_hook[hook]]

    def find(self, name: str):
        """The loaded plugin called *name*, or None."""
        return next((p for p in self.plugins if _name(p) == name), None)

    def has(self, hook: str) -> bool:
        return bool(self._by_hook[hook])

    def run(self, hook: str, ctx, *args) -> defer.Deferred:
        """Fire with the first final :class:`Result`, else CONTINUE."""
        result = self.run_now(hook, ctx, *args)
        return result if isinstance(result, defer.Deferred) else defer.succeed(result)

    def run_now(self, hook: str, ctx, *args) -> Result | defer.Deferred:
        """:meth:`run`, but the Result itself when every hook answered at once.

        Hooks that answer at once are called in a plain loop (no timer, no
        coroutine): only a hook that returns a Deferred costs a timeout."""
        return self._run_from(hook, ctx, args, 0)

    def _run_from(self, hook: str, ctx, args, start: int) -> Result | defer.Deferred:
        """:meth:`run_now` from the *start*-th plugin of *hook* on."""
        plugins, calls = self._by_hook[hook], self._calls[hook]
        for index in range(start, len(plugins)):
            try:
                result = calls[index](ctx, *args)
            except Exception:
                log.failure("plugin {name}: {hook} hook failed", name=_name(plugins[index]),
                            hook=hook)
                return denysoft(FAILURE_TEXT)
            if result is None:                   # most hooks, most of the time
                continue
            plugin = plugins[index]
            if result.__class__ is not Result:   # (Deferred's isinstance goes through ABCMeta)
                if inspect.iscoroutine(result):      # an ``async def`` hook
                    result = _start(result)          # a value, or a fresh Deferred of ours
                elif isinstance(result, defer.Deferred):
                    result = _settled(result)
                if isinstance(result, defer.Deferred):
                    return self._wait(plugin, hook, result, ctx, args, index)
            decided = _answer(ctx, plugin, hook, result)
            if decided is not None:
                return decided
        return CONTINUE

    def _wait(self, plugin, hook: str, d: defer.Deferred, ctx, args,
              index: int) -> defer.Deferred:
        """*d*, the answer of the *index*-th plugin, under the plugin's
        timeout; then the loop goes on from the next plugin.  One callback
        does it all (the timer, the check, the rest of the loop): under load
        every suspended RCPT check runs it."""
        timeout = getattr(plugin, "timeout", None) or self.timeout
        deadlines = self._deadlines
        deadlines.add(d, timeout)

        def landed(result):
            if deadlines.settle(d):
                pass
            elif isinstance(result, Failure) and result.check(defer.CancelledError):
                log.warn("plugin {name}: {hook} hook timed out after {t}s",
                         name=_name(plugin), hook=hook, t=timeout)
                return denysoft(TIMEOUT_TEXT)
            decided = _answer(ctx, plugin, hook, result)
            return decided if decided is not None else self._run_from(hook, ctx, args, index + 1)
        return d.addBoth(landed)


class Deadlines:
    """The timeouts of suspended hooks under one timer.

    A timer per suspended hook costs a ``DelayedCall`` pushed on (and
    compared through) the reactor's heap, then cancelled, on every RCPT
    that waits for the database.  Here a hook's deadline is a dict entry;
    the one timer waits for the earliest, cancels what is overdue and waits
    for the next.  Hooks of one chain share a timeout, so a new deadline is
    nearly never the earliest and, while other hooks wait (a loaded
    service), the timer is not touched."""

    def __init__(self, clock):
        self.clock = clock
        self._due: dict[defer.Deferred, float] = {}
        self._timer = None

    def add(self, d: defer.Deferred, timeout: float) -> None:
        """Cancel *d* if it has not settled within *timeout* seconds."""
        deadline = self.clock.seconds() + timeout
        self._due[d] = deadline
        timer = self._timer
        if timer is None:
            self._timer = self.clock.callLater(timeout, self._expire)
        elif deadline < timer.getTime():
            timer.reset(timeout)

    def settle(self, d: defer.Deferred) -> bool:
        """Forget *d*'s deadline: True when it settled in time.  The timer
        goes with the last deadline (no timer outlives the waits)."""
        due = self._due
        if due.pop(d, None) is None:
            return False
        if not due and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return True

    def _expire(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        for d in [d for d, deadline in self._due.items() if deadline <= now]:
            del self._due[d]
            d.cancel()
        if self._due and self._timer is None:
            self._timer = self.clock.callLater(max(0.0, min(self._due.values()) - now),
                                               self._expire)


def _answer(ctx, plugin, hook: str, result) -> Result | None:
    """What a hook's answer means for the chain: DENYSOFT for a failure, the
    deciding Result, or None to go on with the next plugin."""
    if isinstance(result, Failure):
        log.failure("plugin {name}: {hook} hook failed", result, name=_name(plugin), hook=hook)
        return denysoft(FAILURE_TEXT)
    result = _checked(plugin, hook, result)
    return _decided(ctx, plugin, hook, result) if result.final else None


def _start(coro):
    """Run an ``async def`` hook's coroutine until it first waits: its
    value (or a Failure) when it finished without waiting, which most do
    (their files are cached), else a Deferred of it.  ``ensureDeferred``
    would cost a Deferred and Twisted's coroutine machinery on every hook
    of every command."""
    resumer = _Resumer(coro)
    finished, outcome = resumer.run(None, None)
    return outcome if finished else resumer.done


class _Resumer:
    """Drives a hook's coroutine as ``inlineCallbacks`` would: it is resumed
    when the Deferred it awaits fires, anything else it yields is sent
    straight back, and cancelling :attr:`done` (a hook's timeout) cancels
    what it awaits.  A coroutine that goes on after that (cleaning up) is
    driven to its end, and its late answer dropped."""

    def __init__(self, coro):
        self.coro = coro
        self.waiting: defer.Deferred | None = None
        self.done: defer.Deferred | None = None   # made once the coroutine waits

    def run(self, value, failure: Failure | None) -> tuple[bool, object]:
        """Resume with *value* (or throw *failure*) until the coroutine waits
        on a Deferred that has not fired, ``(False, None)``, or ends,
        ``(True, its value or a Failure)``."""
        while True:
            try:
                if failure is not None:
                    awaited = failure.throwExceptionIntoGenerator(self.coro)
                else:
                    awaited = self.coro.send(value)
            except StopIteration as stop:
                return True, stop.value
            except BaseException:
                return True, Failure()
            if not isinstance(awaited, defer.Deferred):
                value, failure = awaited, None
                continue
            landed = self._wait_on(awaited)
            if landed is _WAITING:
                return False, None
            value, failure = (None, landed) if isinstance(landed, Failure) else (landed, None)

    def _wait_on(self, awaited: defer.Deferred):
        """*awaited*'s result if it has one already, else _WAITING (and
        :meth:`_resume` runs when it fires)."""
        box: list = []

        def landed(result):
            if box:             # fired later: resume from here
                self._resume(result)
            else:
                box.append(result)
            return None         # the result is the coroutine's, as in inlineCallbacks
        awaited.addBoth(landed)
        if box:
            return box[0]
        box.append(_WAITING)
        self.waiting = awaited
        if self.done is None:
            self.done = defer.Deferred(self._cancel)
        return _WAITING

    def _cancel(self, _done) -> None:
        if self.waiting is not None:
            self.waiting.cancel()

    def _resume(self, result) -> None:
        self.waiting = None
        failed = isinstance(result, Failure)
        finished, outcome = self.run(None if failed else result, result if failed else None)
        if not finished:
            return
        if not self.done.called:
            if isinstance(outcome, Failure):
                self.done.errback(outcome)
            else:
                self.done.callback(outcome)
        elif isinstance(outcome, Failure) and not outcome.check(defer.CancelledError):
            log.failure("async hook failed after its timeout", outcome)


_WAITING = object()


def _settled(d: defer.Deferred):
    """What *d* fired with (a Failure for an error) when it already has;
    otherwise *d* itself, to be waited on (the hook hands it over: its
    result becomes the chain's).  A Deferred caught in the middle of its
    own callbacks is waited on through a new one that fires with its
    result (cancelling that cancels *d*)."""
    if not d.called or d.paused:
        return d
    box: list = []
    d.addBoth(box.append)
    if box:
        return box[0]
    later = defer.Deferred(lambda _: d.cancel())

    def forward(_):
        result = box[0]
        if isinstance(result, Failure):
            later.errback(result)
        else:
            later.callback(result)
    d.addBoth(forward)
    return later


def _checked(plugin, hook: str, result) -> Result:
    if result is None:
        return CONTINUE
    if not isinstance(result, Result):
        log.error("plugin {name}: {hook} hook returned {r!r}, not a Result",
                  name=_name(plugin), hook=hook, r=result)
        return denysoft(FAILURE_TEXT)
    return result


def _decided(ctx, plugin, hook: str, result: Result) -> Result:
    if debug_observed():
        ctx.log.debug("plugin {name} {hook}: {verdict}", name=_name(plugin), hook=hook,
                      verdict=result.verdict.value)
    return result


def _name(plugin) -> str:
    return getattr(plugin, "name", type(plugin).__name__)


__all__ = ["PluginChain", "Verdict"]
