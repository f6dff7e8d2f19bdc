"""The outcome of one delivery attempt, as qmail-lspawn/qmail-rspawn report it.

``status`` is one of ``success``, ``deferral`` (try again later) or
``failure`` (permanent: bounce).  ``report`` is qmail's human text; a
multi-line report keeps its lines joined by ``\\n`` (no trailing newline),
and the queue engine renders it (``/`` for log lines, verbatim in bounces).
"""

from __future__ import annotations

from dataclasses import dataclass

SUCCESS = "success"
DEFERRAL = "deferral"
FAILURE = "failure"


@dataclass(frozen=True)
class DeliveryResult:
    """One recipient's result: *status* and qmail's *report* text."""

    status: str
    report: str

    def __post_init__(self):
        if self.status not in (SUCCESS, DEFERRAL, FAILURE):
            raise ValueError(f"unknown delivery status {self.status!r}")

    @classmethod
    def success(cls, report: str) -> "DeliveryResult":
        return cls(SUCCESS, report)

    @classmethod
    def deferral(cls, report: str) -> "DeliveryResult":
        return cls(DEFERRAL, report)

    @classmethod
    def failure(cls, report: str) -> "DeliveryResult":
        return cls(FAILURE, report)

    @property
    def letter(self) -> str:
        """qmail-send's one-letter form: ``K``, ``Z`` or ``D``."""
        return {SUCCESS: "K", DEFERRAL: "Z", FAILURE: "D"}[self.status]


class DeliveryError(Exception):
    """Stops a delivery with a result; raised inside the agents, caught at
    ``deliver()`` and turned into its :class:`DeliveryResult`."""

    def __init__(self, status: str, report: str):
        super().__init__(report)
        self.result = DeliveryResult(status, report)


def temporary(report: str) -> DeliveryError:
    return DeliveryError(DEFERRAL, report)


def permanent(report: str) -> DeliveryError:
    return DeliveryError(FAILURE, report)
