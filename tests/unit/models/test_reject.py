"""The open-set rejection rule and its trade-off curve (numpy only: no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.toolchain.acoustic import reject

K = 3  # keywords 0..2, then unknown (3) and background (4)


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_a_keyword_below_the_threshold_is_not_accepted() -> None:
    p = _probs([[0.7, 0.1, 0.1, 0.05, 0.05], [0.4, 0.3, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.6, 0.1]])
    assert reject.accepted(p, K, 0.0).tolist() == [0, 0, -1]
    assert reject.accepted(p, K, 0.5).tolist() == [0, -1, -1]


def test_threshold_is_the_lowest_meeting_every_calibration_set() -> None:
    rng = np.random.default_rng(1)
    kw = rng.dirichlet(np.full(5, 0.3), 300).astype(np.float32)
    neg = rng.dirichlet(np.full(5, 0.3), 300).astype(np.float32)
    a = reject.trade_off(kw, kw.argmax(1), neg, K)
    b = reject.trade_off(kw, kw.argmax(1), neg[:100], K)
    t = reject.choose_threshold([a, b], max_far=0.05)
    i = int(np.flatnonzero(t == reject.GRID)[0])
    assert max(a.far[i], b.far[i]) <= 0.05
    assert i == 0 or max(a.far[i - 1], b.far[i - 1]) > 0.05
    # Raising the threshold never accepts more, and never rejects fewer keywords.
    assert (np.diff(a.far) <= 0).all() and (np.diff(a.frr) >= 0).all()


def test_rates_count_false_accepts_and_false_rejects_with_intervals() -> None:
    p = _probs(
        [
            [0.9, 0.05, 0.0, 0.05, 0.0],  # keyword 0, right and sure
            [0.5, 0.4, 0.0, 0.1, 0.0],  # keyword 1 heard as 0: a false reject at any threshold
            [0.6, 0.1, 0.1, 0.2, 0.0],  # unknown heard as keyword 0 (0.6): false accept below 0.6
            [0.1, 0.1, 0.1, 0.7, 0.0],  # unknown, rejected
        ]
    )
    fr = reject.false_rejects(p[:2], np.array([0, 1]), K, 0.5)
    fa = reject.false_accepts(p[2:], K, 0.5)
    assert (fa.value, fa.n, fr.value, fr.n) == (0.5, 2, 0.5, 2)
    fa = reject.false_accepts(p[2:], K, 0.65)
    assert fa.value == 0.0 and fa.low == 0.0 and fa.high > 0.0


def test_tie_rate_counts_equal_top_two() -> None:
    assert reject.tie_rate(np.array([[1.0, 1.0, 0.0], [2.0, 1.0, 0.0]])) == 0.5


def test_plot_writes_a_png(tmp_path: Path) -> None:
    kw = np.eye(5, dtype=np.float32)[[0, 1, 2]]
    neg = np.eye(5, dtype=np.float32)[[3, 4, 0]]
    curve = reject.trade_off(kw, np.array([0, 1, 2]), neg, K)
    path = reject.plot({"tiny": curve}, 0.5, "test", tmp_path / "det.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
