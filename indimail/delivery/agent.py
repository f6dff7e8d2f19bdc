"""What the local and remote delivery agents share: the Deferred entry
point that never errbacks, their thread helper, the per-delivery
environment (``fromd.envrules`` and ``rcpt.envrules``) and the
delivery-time filter (``FILTERARGS``/``filterargs``, :mod:`.filter`).

An agent whose ``_run`` does not apply the filter itself (remote delivery)
gets it here: the filter runs first and ``_run`` is handed the filtered
message instead of the queued one.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Mapping

from twisted.internet import threads
from twisted.internet.defer import Deferred

from indimail.config.control import ControlFileError
from indimail.config.environment import Environment
from indimail.config.envrules import load_envrules, match_envrules
from indimail.delivery import filter as dfilter
from indimail.delivery.result import DEFERRAL, DeliveryError, DeliveryResult, temporary
from indimail.fastlog import Logger


def split_address(address: str) -> tuple[str, str]:
    """(local part, domain) at the last ``@``; no ``@``: no domain."""
    at = address.rfind("@")
    if at < 0:
        return address, ""
    return address[:at], address[at + 1:]


def delivery_environment(env: Mapping[str, str], control, sender: str,
                         recipient: str) -> Environment:
    """The environment of one delivery, as spawn-filter makes it: the
    service's, changed by ``fromd.envrules`` (``FROMRULES``) for the sender,
    then by ``rcpt.envrules`` (``RCPTRULES``) for the recipient.  Blocking
    (reads the rules files, cached): call it from a worker thread."""
    out = env if isinstance(env, Environment) else Environment(env)
    for var, default, address in (("FROMRULES", "fromd.envrules", sender),
                                  ("RCPTRULES", "rcpt.envrules", recipient)):
        name = out.get(var) or default
        rules = control.parsed(name, load_envrules)
        if rules:
            changes = match_envrules(rules, address, "QREGEX" in out)
            if changes:
                out = out.apply(changes)
    return out


class DeliveryAgent(abc.ABC):
    """Base of :class:`LocalDelivery` and :class:`RemoteDelivery`.

    Subclasses set :attr:`channel` and :attr:`program` (the qmail program
    whose job they do, named in reports) and implement ``_run``; one that
    applies envrules and filters inside ``_run`` sets :attr:`filters_in_run`."""

    log = Logger()
    channel = ""
    program = ""
    reactor = None
    threadpool = None
    filters_in_run = False

    def deliver(self, queue, msgid: int, sender: str, recipient: str,
                qqeh: str | None = None) -> Deferred:
        """Fires with a :class:`DeliveryResult`; never errbacks."""
        return Deferred.fromCoroutine(self._deliver(queue, msgid, sender, recipient, qqeh))

    def _thread(self, f, *args) -> Deferred:
        pool = self.threadpool or self.reactor.getThreadPool()
        return threads.deferToThreadPool(self.reactor, pool, f, *args)

    def delivery_env(self, sender: str, recipient: str) -> Environment:
        """:func:`delivery_environment` for this agent (blocking)."""
        return delivery_environment(self.env, self.control, sender, recipient)

    async def _deliver(self, queue, msgid, sender, recipient, qqeh) -> DeliveryResult:
        try:
            mess = queue.mess(msgid)
            if self.filters_in_run:
                return await self._run(mess, sender, recipient, qqeh or "")
            return await self._filtered_run(mess, sender, recipient, qqeh or "")
        except DeliveryError as exc:
            return exc.result
        except ControlFileError as exc:
            self.log.error("{channel} delivery: {error}", channel=self.channel, error=str(exc))
            return DeliveryResult(DEFERRAL, f"Unable to read control files: {exc}. (#4.3.0)")
        except Exception:
            self.log.failure("{channel} delivery to {recipient} failed",
                             channel=self.channel, recipient=recipient)
            return DeliveryResult(DEFERRAL, f"Temporary failure in {self.program}. (#4.3.0)")

    # -- the filter for agents that do not run it themselves ------------------

    def _choose_filter(self, sender: str, recipient: str, qqeh: str):
        """(command, filter environment) or None; blocking."""
        env = self.delivery_env(sender, recipient)
        domain = split_address(recipient)[1]
        command = dfilter.filter_command(env, self.control, domain, self.channel)
        if command is None:
            return None
        return command, dfilter.filter_environment(env, domain, recipient, qqeh, sender,
                                                   recipient)

    async def _filtered_run(self, mess: Path, sender: str, recipient: str,
                            qqeh: str) -> DeliveryResult:
        chosen = await self._thread(self._choose_filter, sender, recipient, qqeh)
        if chosen is None:
            return await self._run(mess, sender, recipient, qqeh)
        return await self._through_filter(
            chosen, mess, lambda path: self._run(path, sender, recipient, qqeh))

    async def _through_filter(self, chosen, mess: Path, then) -> DeliveryResult:
        """Run the filter *chosen* (command, filter environment) over *mess*;
        its verdict, or ``then(filtered path)``'s result."""
        command, fenv = chosen
        opened = await self._thread(open_for_filter, mess, fenv)
        src, out, path = opened
        try:
            try:
                verdict = await dfilter.run_filter(self.reactor, command, src, out, path, fenv,
                                                   str(self.home.path))
            finally:
                os.close(src)
                os.close(out)
            if verdict.status is not None:
                return DeliveryResult(verdict.status, verdict.report)
            return await then(Path(path))
        finally:
            await self._thread(dfilter.remove, path)

    @abc.abstractmethod
    async def _run(self, mess: Path, sender: str, recipient: str, qqeh: str) -> DeliveryResult:
        """Deliver the message in *mess* to *recipient*."""


def open_for_filter(mess: os.PathLike | str, env: Mapping[str, str]) -> tuple[int, int, str]:
    """(message fd, output fd, output path) for a filter run; blocking."""
    try:
        src = os.open(mess, os.O_RDONLY)
    except OSError as exc:
        raise temporary(f"Unable to read message: {os.strerror(exc.errno)}. (#4.3.0)") from None
    try:
        out, path = dfilter.make_output(env)
    except OSError as exc:
        os.close(src)
        raise temporary(f"spawn: unable to create a temporary file: "
                        f"{os.strerror(exc.errno)}. (#4.3.0)") from None
    return src, out, path
