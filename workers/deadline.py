"""Absolute deadlines in Unix epoch milliseconds, and how a frame gets one.

A device may stamp `ontime-deadline-ms`; otherwise the first stage stamps the record's Kafka
timestamp plus the pipeline budget. A stamped deadline later than that (plus the allowed clock
skew) is clamped, so a device cannot buy itself more than the budget.
"""

from __future__ import annotations

import time


def now_ms() -> float:
    """Wall clock in epoch milliseconds: deadlines cross machines, so a monotonic clock won't do."""
    return time.time() * 1000.0


class Deadline:
    """A point in epoch milliseconds by which a frame's result must exist."""

    __slots__ = ("at_ms",)

    def __init__(self, at_ms: float) -> None:
        self.at_ms = at_ms

    def remaining_ms(self, now: float | None = None) -> float:
        """Milliseconds left (negative once missed)."""
        return self.at_ms - (now_ms() if now is None else now)

    def expired(self, now: float | None = None) -> bool:
        return self.remaining_ms(now) <= 0

    def __repr__(self) -> str:
        return f"Deadline(at_ms={self.at_ms:.0f})"


def stamp(header: str | None, record_ts_ms: int, budget_ms: float, skew_ms: float) -> int:
    """Deadline of a frame from its header (if any) and Kafka timestamp, clamped to the budget."""
    ceiling = record_ts_ms + budget_ms + skew_ms
    if header:
        try:
            stamped = int(header)
        except ValueError:
            stamped = None
        if stamped is not None:
            return int(min(stamped, ceiling))
    return int(record_ts_ms + budget_ms)
