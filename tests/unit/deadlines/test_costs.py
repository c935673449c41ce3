"""The online cost model: a line fitted to per-size medians, a p99 margin, and a prior."""

from __future__ import annotations

import pytest

from workers.deadlines.costs import CostModel, Line


def feed(model: CostModel, n: int, times: list[float]) -> None:
    for t in times:
        model.observe(n, t)


def test_without_data_the_prior_answers() -> None:
    assert CostModel().cost_ms(8) == 0.0
    prior = Line(2.0, 0.5, tail_ms=1.0)
    model = CostModel(prior=prior)
    assert model.predict_ms(4) == pytest.approx(4.0)
    assert model.cost_ms(4) == pytest.approx(5.0)


def test_fits_intercept_and_slope_from_medians() -> None:
    model = CostModel(min_samples=4)
    for n in (1, 4, 8, 16):
        feed(model, n, [2.0 + 0.5 * n] * 5)
    line = model.line()
    assert line.intercept_ms == pytest.approx(2.0)
    assert line.per_item_ms == pytest.approx(0.5)
    assert model.predict_ms(32) == pytest.approx(18.0)
    assert line.tail_ms == pytest.approx(0.0, abs=1e-9)


def test_a_few_slow_runs_move_the_margin_not_the_line() -> None:
    model = CostModel(min_samples=4)
    for n in (1, 8, 16):
        feed(model, n, [1.0 + 0.25 * n] * 19)
    feed(model, 8, [40.0])  # a GC pause
    line = model.line()
    assert line.intercept_ms == pytest.approx(1.0, abs=0.05)
    assert line.per_item_ms == pytest.approx(0.25, abs=0.01)
    assert model.cost_ms(8) >= model.predict_ms(8)


def test_plans_with_a_high_quantile_of_noisy_runs() -> None:
    model = CostModel(min_samples=4, min_size_samples=20)
    times = [10.0] * 18 + [14.0, 15.0]
    feed(model, 4, times)
    assert model.predict_ms(4) == pytest.approx(10.0)
    # A high quantile of the 20 runs at size 4, not their median.
    assert 14.0 <= model.cost_ms(4) <= 15.0


def test_one_size_only_borrows_the_slope_of_the_prior() -> None:
    model = CostModel(prior=Line(1.0, 0.5), min_samples=3)
    feed(model, 4, [5.0, 5.0, 5.0])
    line = model.line()
    assert line.per_item_ms == pytest.approx(0.5)
    assert line.at(4) == pytest.approx(5.0)
    assert model.predict_ms(8) == pytest.approx(7.0)


def test_slope_is_never_negative() -> None:
    model = CostModel(min_samples=2)
    feed(model, 1, [5.0, 5.0])
    feed(model, 10, [3.0, 3.0])
    line = model.line()
    assert line.per_item_ms == 0.0
    assert line.intercept_ms == pytest.approx(4.0)


def test_intercept_is_never_negative() -> None:
    model = CostModel(min_samples=2)
    feed(model, 2, [0.1, 0.1])
    feed(model, 10, [5.0, 5.0])
    line = model.line()
    assert line.intercept_ms == 0.0
    assert line.per_item_ms > 0


def test_the_window_forgets_an_old_regime() -> None:
    model = CostModel(window=20, min_samples=4)
    feed(model, 4, [1.0] * 20)
    assert model.predict_ms(4) == pytest.approx(1.0)
    feed(model, 4, [9.0] * 20)  # the machine got busy
    assert model.predict_ms(4) == pytest.approx(9.0)


def test_garbage_observations_are_ignored() -> None:
    model = CostModel(min_samples=1)
    model.observe(0, 5.0)
    model.observe(3, float("nan"))
    model.observe(3, -1.0)
    assert model.observed == 0


def test_runs_older_than_the_max_age_are_forgotten_and_the_prior_answers_again() -> None:
    """An overload's slow runs must not price the first burst after it."""
    now = [0.0]
    prior = Line(1.0, 0.1)
    model = CostModel(prior=prior, min_samples=4, max_age_s=2.0, clock=lambda: now[0])
    feed(model, 8, [60.0] * 30)  # runs slowed by an overload
    assert model.cost_ms(8) >= 60.0
    now[0] = 1.5
    assert model.cost_ms(8) >= 60.0  # still within the window
    feed(model, 8, [2.0] * 5)  # the overload ends: a few fast runs
    now[0] = 2.5  # the slow runs are now older than 2 s, the fast ones are not
    assert model.predict_ms(8) == pytest.approx(2.0)
    now[0] = 10.0  # idle: nothing recent at all
    assert model.cost_ms(8) == pytest.approx(prior.at(8))


def test_one_frame_batches_refit_by_time_not_per_few_runs() -> None:
    """Under steady load batches hold one frame: refits are bounded per second, not per 16 runs."""
    now = [0.0]
    model = CostModel(min_samples=4, refit_every=16, refit_s=0.25, clock=lambda: now[0])
    for i in range(1000):  # 1000 one-frame runs in one second, a cost query after each
        now[0] = i / 1000.0
        model.observe(1, 1.0)
        model.cost_ms(1)
    # The window filling (min_samples) plus a refit per quarter second or half window; never 1000 / 16.
    assert model.fits <= 4 + 1000 // 128 + 4
    assert model.fits < 1000 // 16
    now[0] = 1.5  # a quarter second later the next runs are fitted again
    model.observe(1, 3.0)
    for _ in range(15):
        model.observe(1, 3.0)
    assert model.line().tail_ms > 0.0


def test_a_refit_equals_numpys_medians_and_quantiles() -> None:
    import numpy as np

    model = CostModel(min_samples=4, min_size_samples=5, quantile=0.9)
    times = {1: [1.0, 1.3, 0.9, 1.1, 1.7, 1.2], 4: [2.0, 2.5, 2.2, 2.9, 2.1]}
    for n, ts in times.items():
        feed(model, n, ts)
    line = model.line()
    medians = {n: float(np.median(ts)) for n, ts in times.items()}
    slope = (medians[4] - medians[1]) / 3  # equal weights would give exactly this; 6 and 5 runs nearly
    assert line.per_item_ms == pytest.approx(slope, rel=0.05)
    for n, ts in times.items():
        assert model.cost_ms(n) >= float(np.quantile(ts, 0.9)) - 1e-9
