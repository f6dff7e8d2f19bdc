"""Run one hook across the loaded plugins, in order, with timeouts."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

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
        return defer.ensureDeferred(self._run(hook, ctx, args))

    async def _run(self, hook: str, ctx, args) -> Result:
        for plugin in self._by_hook[hook]:
            result = await self._call(plugin, hook, ctx, args)
            if result.final:
                ctx.log.debug("plugin {name} {hook}: {verdict}", name=_name(plugin),
                              hook=hook, verdict=result.verdict.value)
                return result
        return CONTINUE

    async def _call(self, plugin, hook: str, ctx, args) -> Result:
        d = defer.maybeDeferred(getattr(plugin, "hook_" + hook), ctx, *args)
        timeout = getattr(plugin, "timeout", None) or self.timeout
        d.addTimeout(timeout, self.clock)
        try:
            result = await d
        except defer.TimeoutError:
            log.warn("plugin {name}: {hook} hook timed out after {t}s", name=_name(plugin),
                     hook=hook, t=timeout)
            return denysoft(TIMEOUT_TEXT)
        except Exception:
            log.failure("plugin {name}: {hook} hook failed", name=_name(plugin), hook=hook)
            return denysoft(FAILURE_TEXT)
        if result is None:
            return CONTINUE
        if not isinstance(result, Result):
            log.error("plugin {name}: {hook} hook returned {r!r}, not a Result",
                      name=_name(plugin), hook=hook, r=result)
            return denysoft(FAILURE_TEXT)
        return result


def _name(plugin) -> str:
    return getattr(plugin, "name", type(plugin).__name__)


__all__ = ["PluginChain", "Verdict"]
