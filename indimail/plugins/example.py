"""A small example plugin, the one ``docs/plugins.md`` walks through.

It refuses mail to the local parts listed in the ``NOREPLY`` variable
(comma separated, e.g. ``NOREPLY=noreply,no-reply``), for any domain, and
counts the refusals per connection.  Enable it with
``PLUGIN0=indimail.plugins.example:NoReply`` in ``variables/smtpd/`` or by
listing that path in ``control/smtpplugins``.
"""

from __future__ import annotations

from indimail.plugins.api import ORDER_RECIPIENT, deny


class NoReply:
    name = "noreply"
    order = ORDER_RECIPIENT

    def __init__(self, setup):
        self.setup = setup      # control files, home, base environment, reactor

    def hook_rcpt(self, ctx, recipient: str):
        listed = {p.strip().lower() for p in (ctx.env.get("NOREPLY") or "").split(",")
                  if p.strip()}
        local = recipient.rpartition("@")[0] or recipient
        if local.lower() not in listed:
            return None                                  # CONTINUE: not ours to decide
        ctx.session.notes["noreply"] = ctx.session.notes.get("noreply", 0) + 1
        return deny(f"sorry, {recipient} does not accept mail (#5.7.1)", 553)
