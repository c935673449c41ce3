"""Percentile summaries of latencies, over a whole run or a sliding time window.

Shared by the demo's live view and summary, the device simulator and the report, so every
table in ontime computes p50/p95/p99 the same way: linear interpolation between closest ranks
(numpy's default), over milliseconds as floats.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["RateWindow", "SlidingWindow", "Summary", "percentile", "summarize"]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values; NaN when there are none."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {q}")
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True, slots=True)
class Summary:
    """Count and the percentiles a latency budget is judged by; NaN fields when count is 0."""

    count: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float

    @classmethod
    def empty(cls) -> Summary:
        nan = math.nan
        return cls(0, nan, nan, nan, nan, nan)

    def cell(self, q: str, digits: int = 1) -> str:
        """One percentile ("p50", "p95", "p99", "mean", "max") as table text; "-" when empty."""
        value: float = getattr(self, q)
        return "-" if self.count == 0 or math.isnan(value) else f"{value:.{digits}f}"


def summarize(values: Iterable[float]) -> Summary:
    """Summary of `values` (NaN values are ignored: a missing timing is not a zero)."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return Summary.empty()
    return Summary(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        mean=math.fsum(ordered) / len(ordered),
        max=ordered[-1],
    )


class SlidingWindow:
    """Values observed in the last `seconds`; old ones fall out as time moves on.

    `clock` is injectable so tests can move time without sleeping.
    """

    __slots__ = ("_clock", "_items", "seconds")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError("window must be longer than 0 s")
        self.seconds = seconds
        self._clock = clock
        self._items: deque[tuple[float, float]] = deque()

    def add(self, value: float, at: float | None = None) -> None:
        self._items.append((self._clock() if at is None else at, value))

    def _expire(self, now: float) -> None:
        horizon = now - self.seconds
        while self._items and self._items[0][0] < horizon:
            self._items.popleft()

    def values(self, now: float | None = None) -> list[float]:
        self._expire(self._clock() if now is None else now)
        return [v for _, v in self._items]

    def summary(self, now: float | None = None) -> Summary:
        return summarize(self.values(now))

    def __len__(self) -> int:
        return len(self._items)


class RateWindow:
    """Events per second over the last `seconds` (or since the start, if that is shorter)."""

    __slots__ = ("_clock", "_started", "_window")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = SlidingWindow(seconds, clock)
        self._clock = clock
        self._started = clock()

    def add(self, count: int = 1, at: float | None = None) -> None:
        self._window.add(float(count), at)

    def per_second(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        span = min(self._window.seconds, now - self._started)
        if span <= 0:
            return 0.0
        return math.fsum(self._window.values(now)) / span
