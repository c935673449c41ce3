"""What a batch of n messages costs a stage, learned online from its own runs.

Shedding and batching both ask "how long will this take?". The answer is measured, not a
constant: every run reports `(batch size, milliseconds)`; the model keeps the most recent ones,
fits ``latency(n) = a + b·n`` by weighted least squares over the per-size medians (robust to a
few slow runs), and plans with that line plus a tail margin (the 99th percentile of the recent
residuals), or the p99 actually seen at that size when there are enough runs of it. Until there
are enough runs, a prior (from the warm-up run) answers.

The fit is refreshed every `refit_every` runs *and* at most every `refit_s` seconds (at once
after half a window of new runs), not after each run: admission asks for costs on every batch,
and refitting a 256-run window per batch cost more than running the models did. Counting runs
alone was not enough under steady load, where batches hold one or two frames: a refit every 16
runs was a millisecond of numpy every 16 frames, profiled as 30 % of a split infer stage's
Python time at 500 frames/s. A line a quarter of a second old plans as well as a fresh one.

Runs older than `max_age_s` are forgotten, as the measured reserve forgets its frames: the tail
of an overload (every run slowed by the CPU the overload itself took) must not price the first
burst after it. A stage idle for longer plans with its prior again, the warm-up cost of an idle
machine; measured (it shed a whole burst two seconds after a 4× overload, which the same
stage answers in full from idle).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Line:
    """``latency(n) = intercept_ms + per_item_ms · n``, plus the margin to plan with."""

    intercept_ms: float
    per_item_ms: float
    tail_ms: float = 0.0

    def at(self, n: int) -> float:
        return self.intercept_ms + self.per_item_ms * n


class CostModel:
    """Batch latency of one model variant (or one stage's per-batch overhead)."""

    def __init__(
        self,
        prior: Line | None = None,
        window: int = 256,
        min_samples: int = 8,
        min_size_samples: int = 20,
        quantile: float = 0.99,
        refit_every: int = 16,
        refit_s: float = 0.25,
        max_age_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prior = prior
        self.quantile = quantile
        self._min_samples = min_samples
        self._min_size_samples = min_size_samples
        self._runs: deque[tuple[int, float, float]] = deque(maxlen=window)  # (n, ms, when)
        self._max_age_s = max_age_s
        self._clock = clock
        self._line: Line | None = None
        self._size_cost: dict[int, float] = {}  # the quantile seen at a size with enough runs
        self._refit_every = max(1, refit_every)
        self._refit_s = refit_s
        self._fitted_at = 0  # `observed` when the current line was fitted
        self._fitted_clock = -float("inf")  # and `clock()` then
        self.observed = 0
        self.fits = 0  # how often the line was refitted (tests, profiling)

    def observe(self, n: int, ms: float) -> None:
        """One run of a batch of `n` took `ms` milliseconds."""
        if n < 1 or not np.isfinite(ms) or ms < 0:
            return
        now = self._clock()
        self._runs.append((n, ms, now))
        self.observed += 1
        # Refit soon while the window is filling (the prior is still answering), then every
        # `refit_every` runs once `refit_s` has passed, and at once when half the window is new.
        fresh = self.observed - self._fitted_at
        if (
            len(self._runs) <= self._min_samples
            or (fresh >= self._refit_every and now - self._fitted_clock >= self._refit_s)
            or 2 * fresh >= (self._runs.maxlen or 0)
        ):
            self._line = None

    def set_prior(self, prior: Line) -> None:
        self.prior = prior
        self._line = None

    def line(self) -> Line:
        """The current fit (or the prior, or zero cost when nothing is known yet)."""
        if self._runs:
            now = self._clock()
            # Aged-out runs are dropped no more often than a refit may happen: at a low rate the
            # oldest run is always past the age, and forgetting it forced a refit on every call.
            if now - self._runs[0][2] > self._max_age_s and now - self._fitted_clock >= self._refit_s:
                self._forget_old()
        if self._line is None:
            self._line = self._fit()
            self._fitted_at = self.observed
            self._fitted_clock = self._clock()
            self.fits += 1
        return self._line

    def _forget_old(self) -> None:
        horizon = self._clock() - self._max_age_s
        while self._runs and self._runs[0][2] < horizon:
            self._runs.popleft()
        self._line = None

    def predict_ms(self, n: int) -> float:
        """Central estimate for a batch of `n`."""
        return max(0.0, self.line().at(n))

    def cost_ms(self, n: int) -> float:
        """The cost to plan with for a batch of `n`: a high quantile (p99 by default), not a mean."""
        line = self.line()
        estimate = max(0.0, line.at(n)) + line.tail_ms
        seen = self._size_cost.get(n)
        return estimate if seen is None else max(estimate, seen)

    def _fit(self) -> Line:
        self._size_cost = {}
        if len(self._runs) < self._min_samples:
            return self.prior or Line(0.0, 0.0)
        # Plain Python over a few hundred runs: a dozen numpy calls per size cost ~1 ms a fit.
        by_size: dict[int, list[float]] = {}
        for n, ms, _ in self._runs:
            by_size.setdefault(n, []).append(ms)
        for seen in by_size.values():
            seen.sort()
        sizes = sorted(by_size)
        ns = np.array(sizes, dtype=np.float64)
        medians = np.array([_quantile(by_size[n], 0.5) for n in sizes])
        weights = np.array([len(by_size[n]) for n in sizes], dtype=np.float64)
        self._size_cost = {
            n: _quantile(seen, self.quantile)
            for n, seen in by_size.items()
            if len(seen) >= self._min_size_samples
        }
        a, b = _weighted_line(ns, medians, weights, self.prior)
        residuals = sorted(ms - (a + b * n) for n, ms, _ in self._runs)
        tail = max(0.0, _quantile(residuals, self.quantile))
        return Line(a, b, tail)


def _quantile(ordered: list[float], q: float) -> float:
    """numpy's default (linear) quantile of an ascending, non-empty list."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _weighted_line(
    ns: np.ndarray, medians: np.ndarray, weights: np.ndarray, prior: Line | None
) -> tuple[float, float]:
    """Least squares of medians on n, kept physical: slope and intercept never negative."""
    if ns.size == 1:
        b = prior.per_item_ms if prior else 0.0
        b = min(b, float(medians[0]) / float(ns[0]))
        return float(medians[0]) - b * float(ns[0]), b
    w = weights / weights.sum()
    n_mean = float((w * ns).sum())
    m_mean = float((w * medians).sum())
    var = float((w * (ns - n_mean) ** 2).sum())
    b = float((w * (ns - n_mean) * (medians - m_mean)).sum()) / var
    if b < 0:
        return m_mean, 0.0
    a = m_mean - b * n_mean
    if a < 0:
        # Through the origin: all of the cost is per item.
        return 0.0, float((w * ns * medians).sum() / (w * ns * ns).sum())
    return a, b
