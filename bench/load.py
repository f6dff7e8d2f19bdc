"""One measured round: smtp-source against a server, then wait for the Maildir.

Inject time is smtp-source's wall time (it exits after the last ``250``); the
end-to-end time runs from the same start until ``Maildir/new`` holds every
message, polled every 50 ms.  A round never hangs: it gives up after a total
deadline, or when deliveries stop making progress, and says how many arrived.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

SMTP_SOURCE = "/usr/sbin/smtp-source"


@dataclass(frozen=True)
class Load:
    """The offered load: the issue's numbers are the defaults."""

    messages: int = 2000
    sessions: int = 20
    size: int = 2048
    sender: str = "bench@example.org"

    def command(self, port: int, recipient: str,
                smtp_source: str = SMTP_SOURCE) -> list[str]:
        """smtp-source argv; ``-c`` makes it print a counter per completed DATA."""
        return [smtp_source, "-c", "-s", str(self.sessions), "-m", str(self.messages),
                "-l", str(self.size), "-f", self.sender, "-t", recipient,
                f"127.0.0.1:{port}"]


@dataclass
class RoundResult:
    """What one round measured; rates are None when the round fell short."""

    system: str
    round: int
    messages: int
    accepted: int
    delivered: int
    inject_seconds: float | None
    e2e_seconds: float | None
    error: str | None = None
    max_gap: float = 0.0           # seconds: a long one means a stalled queue
    progress: list = field(default_factory=list)   # (seconds, delivered) ~1/s

    @property
    def inject_rate(self) -> float | None:
        if not self.inject_seconds or self.accepted < self.messages:
            return None                  # smtp-source did not get every 250
        return self.messages / self.inject_seconds

    @property
    def e2e_rate(self) -> float | None:
        if not self.e2e_seconds or self.delivered < self.messages:
            return None
        return self.messages / self.e2e_seconds

    def as_dict(self) -> dict:
        data = asdict(self)
        data["inject_rate"] = self.inject_rate
        data["e2e_rate"] = self.e2e_rate
        return data


_COUNTER = re.compile(rb"\d+")


def parse_counter(output: bytes) -> int:
    """The last value of smtp-source's ``-c`` running counter (0 if none)."""
    numbers = _COUNTER.findall(output)
    return int(numbers[-1]) if numbers else 0


def count_files(directory: Path) -> int:
    """Entries in a Maildir ``new/`` (0 while it does not exist yet)."""
    try:
        with os.scandir(directory) as entries:
            return sum(1 for _ in entries)
    except FileNotFoundError:
        return 0


def check_sample(directory: Path, payload: int) -> str | None:
    """A delivered file must hold at least the payload: catches truncation."""
    try:
        with os.scandir(directory) as entries:
            entry = next(iter(entries), None)
            size = entry.stat().st_size if entry is not None else None
    except FileNotFoundError:
        size = None
    if size is not None and size < payload:
        return f"delivered message {entry.name} has {size} bytes < payload {payload}"
    return None


def run_round(system: str, round_no: int, port: int, recipient: str,
              new_dir: Path, load: Load, *, poll: float = 0.05,
              timeout: float = 900.0, stall: float = 120.0,
              sample_every: float = 1.0,
              smtp_source: str = SMTP_SOURCE,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep,
              count: Callable[[Path], int] = count_files,
              spawn: Callable[..., subprocess.Popen] = subprocess.Popen,
              check: Callable[[Path, int], str | None] = check_sample
              ) -> RoundResult:
    """Send *load* to 127.0.0.1:*port* and time injection and delivery."""
    baseline = count(new_dir)
    target = load.messages
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    ended: list[float] = []
    start = clock()
    proc = spawn(load.command(port, recipient, smtp_source),
                 stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    waiter = threading.Thread(target=lambda: (proc.wait(), ended.append(clock())),
                              daemon=True)
    waiter.start()
    delivered = 0
    e2e_end = None
    progress_at = start
    max_gap = 0.0                  # longest wait between two delivery counts
    progress: list[tuple[float, int]] = []
    last_sample = start
    try:
        while True:
            now = clock()
            n = count(new_dir) - baseline
            if n != delivered:
                max_gap = max(max_gap, now - progress_at)
                delivered, progress_at = n, now
                if now - last_sample >= sample_every or delivered >= target:
                    progress.append((round(now - start, 3), delivered))
                    last_sample = now
            if delivered >= target:
                e2e_end = now
                break
            if not waiter.is_alive():            # smtp-source has exited
                idle_since = max(progress_at, ended[0])
                if proc.returncode != 0 and delivered >= _accepted(out):
                    break                        # failed inject; all it got in arrived
                if now - idle_since > stall:
                    break
            if now - start > timeout:
                break
            sleep(poll)
        if waiter.is_alive():
            waiter.join(max(0.0, timeout - (clock() - start)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        waiter.join()
    accepted = _accepted(out)
    error = None
    if proc.returncode != 0:
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
        error = f"smtp-source exited {proc.returncode}: " + " | ".join(tail)
    elif delivered < target:
        error = f"only {delivered}/{target} messages reached the Maildir"
    else:
        error = check(new_dir, load.size)
    if delivered < target:
        max_gap = max(max_gap, clock() - progress_at)
    inject = (ended[0] - start) if ended else None
    e2e = (e2e_end - start) if e2e_end is not None else None
    if e2e is not None and inject is not None:
        e2e = max(e2e, inject)
    out.close()
    err.close()
    return RoundResult(system, round_no, load.messages, accepted, delivered,
                       inject, e2e, error, round(max_gap, 3), progress)


def _accepted(out) -> int:
    out.seek(0)
    return parse_counter(out.read())
