"""Absolute deadlines in Unix epoch milliseconds, how a frame gets one.

A device may stamp `ontime-deadline-ms`; otherwise the first stage stamps the record's Kafka
timestamp plus the pipeline budget. A stamped deadline later than that (plus the allowed clock
skew) is clamped, so a device cannot buy itself more than the budget. docs/deadlines.md states
the skew bounds this gives.

Every function that needs "now" takes a `Clock` (or a `now` in ms), so the deadline math runs
under a fake clock in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time in Unix epoch milliseconds."""


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


def stamp(
    header: str | None, record_ts_ms: int, budget_ms: float, skew_ms: float, now: float | None = None
) -> int:
    """Deadline of a frame from its header (if any) and Kafka timestamp, clamped to the budget.

    Without a header: timestamp + budget. With one: at most timestamp + budget + skew. When the
    worker's `now` is given, a record timestamp from the future (a device clock running ahead by
    more than `skew_ms`) is first pulled back to `now + skew_ms`, so no frame ever holds more
    than budget + 2·skew of time at the stage that stamps it.
    """
    ts = float(record_ts_ms)
    if now is not None:
        ts = min(ts, now + skew_ms)
    ceiling = ts + budget_ms + skew_ms
    if header:
        try:
            stamped = int(header.strip())
        except ValueError:
            stamped = None
        if stamped is not None:
            return int(min(stamped, ceiling))
    return int(ts + budget_ms)
