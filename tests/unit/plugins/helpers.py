"""Plugins used by the plugin API tests (loaded by dotted path)."""

from __future__ import annotations

from twisted.internet import defer

from indimail.plugins.api import (ORDER_FIRST, accept, deny, denysoft, discard, disconnect)

CALLS: list[str] = []


class Recorder:
    """Records each hook call; returns the verdict named by the env."""

    name = "recorder"
    order = ORDER_FIRST

    def __init__(self, setup):
        self.setup = setup

    def _verdict(self, ctx, stage):
        CALLS.append(stage)
        want = ctx.env.get(f"RECORDER_{stage.upper()}")
        if want == "deny":
            return deny(f"{stage} refused by recorder", 554)
        if want == "denysoft":
            return denysoft(f"{stage} deferred by recorder")
        if want == "disconnect":
            return disconnect(f"{stage} closed by recorder")
        if want == "discard":
            return discard()
        if want == "accept":
            return accept(address=None)
        if want == "later":   # a Deferred that never fires: the timeout decides
            return defer.Deferred()
        if want == "raise":
            raise RuntimeError("recorder exploded")
        return None

    def hook_connect(self, ctx):
        return self._verdict(ctx, "connect")

    def hook_helo(self, ctx, helo):
        return self._verdict(ctx, "helo")

    def hook_mail(self, ctx, sender):
        return self._verdict(ctx, "mail")

    def hook_rcpt(self, ctx, recipient):
        return self._verdict(ctx, "rcpt")

    def hook_data(self, ctx):
        return self._verdict(ctx, "data")

    def hook_queue(self, ctx):
        CALLS.append("headers:" + ",".join(n for n, _ in ctx.transaction.headers))
        CALLS.append(f"size:{ctx.transaction.size}")
        return self._verdict(ctx, "queue")


def make_named(name, order, verdict=None):
    """A factory for a plugin *name* that records rcpt calls."""
    class Named:
        def __init__(self, setup):
            self.name = name
            self.order = order

        def hook_rcpt(self, ctx, recipient):
            CALLS.append(name)
            return verdict
    return Named


First = make_named("first", 10)
Second = make_named("second", 20, deny("second says no", 550))
Third = make_named("third", 30)
