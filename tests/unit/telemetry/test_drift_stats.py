"""Drift statistics on synthetic numbers: binning, PSI, and a window that forgets old blocks."""

from __future__ import annotations

import numpy as np

from schemas.drift import GroupReference
from workers.telemetry.drift_stats import DriftWindow, bin_counts, measure, psi, quantile_edges, shares


def group(values: np.ndarray, bins: int = 10) -> GroupReference:
    edges = quantile_edges(values, bins)
    return GroupReference(
        measure="axis_mean",
        tensor="input",
        edges=edges.tolist(),
        probs=shares(bin_counts(values, edges)).tolist(),
        mean=values.mean(axis=0).tolist(),
        var=values.var(axis=0).tolist(),
        threshold=0.25,
    )


def test_bin_counts_agree_with_searchsorted_per_dimension() -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal((500, 3))
    edges = np.sort(rng.standard_normal((3, 4)), axis=1)
    counts = bin_counts(values, edges)
    for d in range(3):
        expected = np.bincount(np.searchsorted(edges[d], values[:, d], side="right"), minlength=5)
        assert counts[d].tolist() == expected.tolist()


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(2)
    ref = group(rng.standard_normal((20_000, 4)))
    edges, probs = np.asarray(ref.edges), np.asarray(ref.probs)
    same = psi(probs, bin_counts(rng.standard_normal((512, 4)), edges))
    shifted = psi(probs, bin_counts(rng.standard_normal((512, 4)) + 1.0, edges))
    assert same < 0.05 < 0.25 < shifted


def test_measures_of_a_waveform_level_and_silence() -> None:
    x = np.zeros((2, 16_000), dtype=np.float32)
    x[0] = 0.1  # -20 dBFS everywhere
    x[1, :8_000] = 0.01  # -40 dBFS in the first half, digital silence after
    level = GroupReference(
        measure="rms_dbfs",
        tensor="input",
        params={"block": 160},
        edges=[],
        probs=[],
        mean=[],
        var=[],
        threshold=0,
    )
    silence = level.model_copy(
        update={"measure": "silence_share", "params": {"block": 160, "floor_db": -60.0}}
    )
    assert np.allclose(measure(level, x)[:, 0], [-20.0, -40.0 - 10 * np.log10(2)], atol=1e-4)
    assert measure(silence, x)[:, 0].tolist() == [0.0, 0.5]


def test_logits_measures_are_the_argmax_and_its_softmax_probability() -> None:
    logits = np.array([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    top = GroupReference(
        measure="top1_index", tensor="output", edges=[], probs=[], mean=[], var=[], threshold=0
    )
    prob = top.model_copy(update={"measure": "top1_prob"})
    assert measure(top, logits)[:, 0].tolist() == [1.0, 0.0]
    e = np.exp(2.0)
    assert np.allclose(measure(prob, logits)[:, 0], [e / (e + 2), 1 / 3])


def test_the_window_forgets_a_drifted_stretch_once_enough_clean_blocks_follow() -> None:
    rng = np.random.default_rng(3)
    ref = group(rng.standard_normal((20_000, 2)))
    window = DriftWindow({"g": ref}, window_frames=256, blocks=4)

    def feed(shift: float, frames: int) -> None:
        for _ in range(frames // 16):  # batches of 16 frames, [16, 2, 1]: mean over the last axis
            window.add({"input": (rng.standard_normal((16, 2)) + shift)[:, :, None]})

    assert np.isnan(window.scores()["g"]), "no score before half a window"
    feed(0.0, 256)
    clean = window.scores()["g"]
    feed(2.0, 256)
    drifted = window.scores()["g"]
    feed(0.0, 512)
    recovered = window.scores()["g"]
    assert clean < 0.25 < drifted and recovered < 0.25
    assert window.frames("g") <= 256 + 64, "old blocks leave the window"
