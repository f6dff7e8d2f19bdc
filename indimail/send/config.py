"""The settings of the delivery engine, read once per start and per SIGHUP.

Control files as qmail-send's ``getcontrols()``: concurrencylocal /
concurrencyremote (and the per-queue ``concurrencyl.<queue>`` /
``concurrencyr.<queue>``, ``<queue>`` the queue directory's name),
holdlocal / holdremote, queuelifetime, bouncelifetime, the bounce
controls, locals, virtualdomains, envnoathost, percenthack; and the
``bounce.envrules`` (or ``$BOUNCERULES``) file that lets bounces be queued
with their own settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.config.envrules import EnvRule, load_envrules, match_envrules
from indimail.queue.bounce import BounceConfig
from indimail.queue.schedule import DEFAULT_LIFETIME, LOCAL, REMOTE
from indimail.queue.todo import Rewriter

DEFAULT_CONCURRENCY = {LOCAL: 10, REMOTE: 20}


@dataclass(frozen=True)
class SendConfig:
    """One snapshot of everything a queue engine decides with."""

    rewriter: Rewriter = field(default_factory=lambda: Rewriter(frozenset({"localhost"})))
    bounce: BounceConfig = field(default_factory=BounceConfig)
    concurrency: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CONCURRENCY))
    lifetime: int = DEFAULT_LIFETIME
    bouncelifetime: int | None = None
    fsync: bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    bounce_rules: tuple[EnvRule, ...] = ()
    # holdlocal / holdremote: a non-zero value stops starting deliveries on
    # that channel (todo processing and scheduling go on)
    hold: Mapping[str, bool] = field(default_factory=lambda: {LOCAL: False, REMOTE: False})

    def bounce_env(self, sender: str) -> Mapping[str, str] | None:
        """The environment a bounce of *sender*'s message is queued with:
        the service's, changed by every matching ``bounce.envrules`` line
        (None when no rule matches: the Enqueuer's own)."""
        changes = match_envrules(list(self.bounce_rules), sender,
                                 regex="QREGEX" in self.env)
        return Environment(self.env).apply(changes) if changes else None

    @classmethod
    def load(cls, control: ControlFiles, env: Mapping[str, str],
             queue_name: str) -> "SendConfig":
        local = control.int("concurrencylocal", DEFAULT_CONCURRENCY[LOCAL])
        local = control.int(f"concurrencyl.{queue_name}", local)
        remote = control.int("concurrencyremote", DEFAULT_CONCURRENCY[REMOTE])
        remote = control.int(f"concurrencyr.{queue_name}", remote)
        lifetime = control.int("queuelifetime", DEFAULT_LIFETIME)
        bouncelifetime = control.int("bouncelifetime", lifetime) if control.exists(
            "bouncelifetime") else None
        return cls(
            rewriter=Rewriter.from_control(control),
            bounce=BounceConfig.from_control(control),
            concurrency={LOCAL: max(local, 1), REMOTE: max(remote, 1)},
            lifetime=lifetime,
            bouncelifetime=bouncelifetime,
            fsync=env.get("USE_FSYNC", "1").strip() not in ("0",),
            env=dict(env),
            hold={LOCAL: control.int("holdlocal", 0) != 0,
                  REMOTE: control.int("holdremote", 0) != 0},
            bounce_rules=tuple(load_envrules(env.get("BOUNCERULES")
                                             or control.path("bounce.envrules"))),
        )
