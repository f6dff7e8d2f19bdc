"""Medians, ratios and the printed table (pure functions over RoundResults)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from statistics import median
from typing import Iterable

from load import RoundResult


@dataclass(frozen=True)
class Summary:
    """One system's medians over its complete rounds."""

    system: str
    rounds: int
    inject_ok: int
    e2e_ok: int
    inject_median: float | None
    e2e_median: float | None


def summarise(system: str, results: Iterable[RoundResult]) -> Summary:
    """Median inject and end-to-end rates over the rounds that completed."""
    mine = [r for r in results if r.system == system]
    inject = [r.inject_rate for r in mine if r.inject_rate is not None]
    e2e = [r.e2e_rate for r in mine if r.e2e_rate is not None]
    return Summary(system, len(mine), len(inject), len(e2e),
                   median(inject) if inject else None,
                   median(e2e) if e2e else None)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours/theirs, None when either side has no figure."""
    if ours is None or not theirs:
        return None
    return ours / theirs


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def render_rounds(results: Iterable[RoundResult]) -> str:
    """One line per round, for the record."""
    lines = []
    for r in results:
        line = (f"  round {r.round} {r.system:<9} inject {_fmt(r.inject_rate):>8} msg/s"
                f" ({_fmt(r.inject_seconds, '.2f')} s)  end-to-end"
                f" {_fmt(r.e2e_rate):>8} msg/s ({_fmt(r.e2e_seconds, '.2f')} s)"
                f"  delivered {r.delivered}/{r.messages}")
        if r.max_gap >= 1.0:
            line += f"  longest delivery gap {r.max_gap:.1f} s"
        if r.error:
            line += f"  [{r.error}]"
        lines.append(line)
    return "\n".join(lines)


def per_session_ms(summary: Summary, sessions: int) -> float | None:
    """Mean milliseconds one session spends on one message (connect to the
    250 after the dot, QUIT): sessions / inject rate.  With one session this
    is the 1-session latency per message."""
    if not summary.inject_median:
        return None
    return 1000.0 * sessions / summary.inject_median


def render_latency(ours: Summary, theirs: Summary, sessions: int) -> str:
    """The per-session time per message of both systems and their ratio."""
    a, b = per_session_ms(ours, sessions), per_session_ms(theirs, sessions)
    return (f"time per message in one of {sessions} session(s): {ours.system} {_fmt(a, '.2f')} ms,"
            f" {theirs.system} {_fmt(b, '.2f')} ms, ratio {_fmt(ratio(a, b), '.2f')}")


def render_table(ours: Summary, theirs: Summary, header: str = "") -> str:
    """The median table plus the indimail/postfix ratios."""
    rows = [("system", "inject msg/s", "end-to-end msg/s", "rounds ok")]
    for s in (ours, theirs):
        rows.append((s.system, _fmt(s.inject_median), _fmt(s.e2e_median),
                     f"{min(s.inject_ok, s.e2e_ok)}/{s.rounds}"))
    rows.append((f"ratio {ours.system}/{theirs.system}",
                 _fmt(ratio(ours.inject_median, theirs.inject_median), ".3f"),
                 _fmt(ratio(ours.e2e_median, theirs.e2e_median), ".3f"), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = [header] if header else []
    for i, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                             for j, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def to_json(ours: Summary, theirs: Summary, results: Iterable[RoundResult],
            params: dict) -> str:
    """Everything measured, machine-readable."""
    return json.dumps({
        "params": params,
        "median": {s.system: {"inject_rate": s.inject_median,
                              "e2e_rate": s.e2e_median,
                              "rounds": s.rounds,
                              "inject_ok": s.inject_ok, "e2e_ok": s.e2e_ok}
                   for s in (ours, theirs)},
        "ratio": {"inject": ratio(ours.inject_median, theirs.inject_median),
                  "e2e": ratio(ours.e2e_median, theirs.e2e_median)},
        "ms_per_message_per_session": {
            s.system: per_session_ms(s, params.get("sessions", 1)) for s in (ours, theirs)},
        "rounds": [r.as_dict() for r in results],
    }, indent=2)
