"""Percentiles, summaries and sliding windows used by every latency table."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from workers.tools.stats import RateWindow, SlidingWindow, Summary, percentile, summarize


class FakeClock:
    """A clock the test moves by hand, so windows are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentile_matches_numpy_linear_interpolation() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 101, 1000):
        values = sorted(rng.uniform(0, 500) for _ in range(n))
        for q in (0, 1, 50, 95, 99, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_nan_and_bad_q_raises() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_known_values() -> None:
    s = summarize(float(v) for v in range(1, 101))  # 1..100
    assert s.count == 100
    assert s.p50 == pytest.approx(50.5)
    assert s.p95 == pytest.approx(95.05)
    assert s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5)
    assert s.max == 100.0


def test_summarize_ignores_nan_and_unsorted_input() -> None:
    s = summarize([30.0, math.nan, 10.0, 20.0])
    assert s.count == 3
    assert s.p50 == 20.0
    assert s.max == 30.0


def test_empty_summary_renders_dashes() -> None:
    s = summarize([])
    assert s.count == 0 and math.isnan(s.p50)
    assert Summary.empty().count == 0
    assert s.cell("p95") == "-"
    assert summarize([12.345]).cell("p99", 2) == "12.35"


def test_sliding_window_forgets_old_values() -> None:
    clock = FakeClock()
    window = SlidingWindow(10.0, clock)
    window.add(1.0)
    clock.now += 5
    window.add(2.0)
    assert window.values() == [1.0, 2.0]
    clock.now += 6  # the first value is now 11 s old
    assert window.values() == [2.0]
    assert window.summary().count == 1
    clock.now += 100
    assert window.summary().count == 0


def test_sliding_window_rejects_zero_length() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(0)


def test_rate_window_per_second() -> None:
    clock = FakeClock()
    rate = RateWindow(5.0, clock)
    assert rate.per_second() == 0.0
    clock.now += 2
    rate.add(10)
    assert rate.per_second() == pytest.approx(5.0)  # 10 events in the 2 s since the start
    clock.now += 3
    rate.add(5)
    assert rate.per_second() == pytest.approx(3.0)  # 15 events in a full 5 s window
    clock.now += 4  # the first batch (at t=2) is 7 s old
    assert rate.per_second() == pytest.approx(1.0)
