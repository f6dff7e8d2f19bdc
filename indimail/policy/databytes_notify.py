"""The ``databytes_notify`` plugin: tell the recipients about a message
refused for its size (``DATABYTES_NOTIFY``).

When a message exceeds ``databytes`` the client gets
``552 sorry, that message size exceeds my databytes limit (#5.3.4)`` and,
with ``DATABYTES_NOTIFY`` set, upstream's ``msg_notify()`` queues a short
header-only note from the same sender to the same recipients, so they know
mail was bounced back to the sender::

    X-size-Notification: size=<bytes>,<date>
    To: do-not-reply
    From: <sender>
    Subject: Notification Message size <bytes> exceeds data limit
    Date: <date>

It is queued like any SMTP message (the queue's and smtpd's Received
lines first) and logged as ``qmail-smtpd: pid P IP NOTIFY: MAIL from <s>
RCPT <r> Size: N``.

The protocol calls ``hook_oversize(ctx)`` after the 552, with
``ctx.transaction`` holding the sender, the accepted recipients and
``size`` (the bytes received).  The queue is ``setup.options["sink"]``
when the service passes its sink, else an Enqueuer of the home's queue
(none without a home: the note is then only logged as impossible).
"""

from __future__ import annotations

from twisted.internet import defer

from indimail.fastlog import Logger
from indimail.plugins.api import ORDER_DEFAULT
from indimail.queue.bounce import date822
from indimail.smtp.received import smtpd_received

from .accesslist import session_pid

log = Logger()


def notification(sender: str, size: int, now: float) -> bytes:
    """upstream's header block, one ``\\n`` per line."""
    date = date822(now)
    text = (f"X-size-Notification: size={size},{date}\n"
            f"To: do-not-reply\nFrom: {sender}\n"
            f"Subject: Notification Message size {size} exceeds data limit\n"
            f"Date: {date}\n")
    return text.encode("utf-8", "surrogateescape")


def received(ctx) -> bytes:
    """smtpd's Received line for this session (as upstream writes it first)."""
    s, st = ctx.session, ctx.settings
    return smtpd_received(pid=session_pid(ctx),
                          local=getattr(st, "local_host", None) or "unknown",
                          remote_ip=s.remote_ip, remote_host=s.remote_host,
                          remote_info=s.remote_info, helo=s.helo,
                          protocol=s.protocol_name, now=ctx.clock.seconds(),
                          hide=bool(getattr(st, "hide_host", False)))


class DatabytesNotify:
    """Queues the size notification for an oversize message."""

    name = "databytes_notify"
    order = ORDER_DEFAULT

    def __init__(self, sink_factory):
        self._sink_factory = sink_factory
        self._sink = None

    @classmethod
    def from_setup(cls, setup) -> "DatabytesNotify":
        def sink():
            given = setup.options.get("sink")
            if given is not None or setup.home is None:
                return given
            from indimail.queue.enqueue import Enqueuer
            return Enqueuer(setup.home, setup.env, reactor=setup.reactor)
        return cls(sink)

    @property
    def sink(self):
        if self._sink is None:
            self._sink = self._sink_factory()
        return self._sink

    def hook_oversize(self, ctx):
        """Queue the notification when ``DATABYTES_NOTIFY`` is set; its
        failure is only logged (the client already has its 552)."""
        txn = ctx.transaction
        if not ctx.env.flag("DATABYTES_NOTIFY") or txn is None or not txn.recipients:
            return None
        return defer.ensureDeferred(self._notified(ctx))

    async def _notified(self, ctx) -> None:
        await self.notify(ctx)     # a hook answers None: nothing more to say

    async def notify(self, ctx) -> int | None:
        """The queued notification's id, or None when queueing failed."""
        txn, session = ctx.transaction, ctx.session
        pid = session_pid(ctx)
        recipients = list(txn.recipients)
        if self.sink is None:
            log.warn("qmail-smtpd: pid {pid} {ip} DATABYTES_NOTIFY: no queue to notify into",
                     pid=pid, ip=session.remote_ip)
            return None
        try:
            message = self.sink.begin(session.env, invoked="network",
                                      remote_ip=session.remote_ip)
            message.write(received(ctx))
            message.write(notification(txn.sender, txn.size, ctx.clock.seconds()))
            msgid = await message.finish(txn.sender, recipients)
        except Exception:
            log.failure("qmail-smtpd: pid {pid} {ip} qqt failure", pid=pid,
                        ip=session.remote_ip)
            return None
        for rcpt in recipients:
            log.info("qmail-smtpd: pid {pid} {ip} NOTIFY: MAIL from <{sender}> RCPT <{rcpt}> "
                     "Size: {size}", pid=pid, ip=session.remote_ip, sender=txn.sender,
                     rcpt=rcpt, size=txn.size)
        return msgid


PLUGINS = {"databytes_notify": DatabytesNotify.from_setup}
