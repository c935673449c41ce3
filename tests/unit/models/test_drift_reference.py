"""The drift references in the committed cards, and the toolchain pieces that write them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from models import MODELS_DIR
from models.toolchain.acoustic import reference
from models.toolchain.cards import write_card
from schemas.card import ModelCard

SERVED = ("features", "student-int8", "student-pruned-int8")


@pytest.mark.parametrize("variant", SERVED)
def test_committed_reference_is_well_formed_and_its_thresholds_sit_above_every_held_out_window(
    variant: str,
) -> None:
    card = ModelCard.load(MODELS_DIR / "acoustic" / variant)
    ref = card.reference
    assert ref is not None and ref.frames > 40_000 and ref.window_frames == reference.WINDOW_FRAMES
    for name, group in ref.groups.items():
        edges, probs = np.asarray(group.edges), np.asarray(group.probs)
        assert edges.shape[0] == probs.shape[0] == len(group.mean) == len(group.var), name
        assert probs.shape[1] == edges.shape[1] + 1 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        assert (np.diff(edges, axis=1) >= 0).all(), f"{name}: edges must ascend"
        assert group.threshold >= 0.25
        held_out = [m.max[name] for m in ref.measured if not m.drifted]
        assert held_out and max(held_out) < group.threshold, name
    drifted = [m for m in ref.measured if m.drifted]
    assert drifted and any(any(m.max[g] > r.threshold for g, r in ref.groups.items()) for m in drifted)


def test_every_drifted_stream_but_clipping_goes_over_some_served_threshold() -> None:
    cards = [ModelCard.load(MODELS_DIR / "acoustic" / v) for v in ("features", "student-int8")]
    streams = {m.stream for c in cards for m in c.reference.measured if m.drifted}  # type: ignore[union-attr]
    caught = {
        m.stream
        for c in cards
        for m in c.reference.measured  # type: ignore[union-attr]
        if m.drifted and any(m.max[g] > r.threshold for g, r in c.reference.groups.items())  # type: ignore[union-attr]
    }
    assert streams - caught == {"real eval clips at +20 dB (clipping)"}


def test_fit_group_bins_inputs_at_the_tails_and_labels_one_per_class() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((10_000, 2))
    level = reference.fit_group(reference.AUDIO_GROUPS[0], values[:, :1])
    assert len(level.edges[0]) == 2
    assert np.allclose(level.edges[0], np.quantile(values[:, 0], [0.01, 0.99]), atol=1e-6)
    assert np.allclose(level.probs[0], [0.01, 0.98, 0.01], atol=1e-3)
    labels = reference.fit_group(reference.INFER_GROUPS[1], rng.integers(0, 17, (5_000, 1)).astype(float))
    assert len(labels.probs[0]) == 17


def test_rebuilding_a_card_keeps_its_reference_only_while_the_model_is_the_same(tmp_path: Path) -> None:
    variant = tmp_path / "features"
    shutil.copytree(MODELS_DIR / "acoustic" / "features", variant)
    committed = ModelCard.load(variant)
    assert committed.reference is not None
    write_card(committed.model_copy(update={"reference": None}), variant)
    assert ModelCard.load(variant).reference == committed.reference
    write_card(committed.model_copy(update={"reference": None, "sha256": "0" * 64}), variant)
    assert ModelCard.load(variant).reference is None


def test_check_tolerates_rounding_in_the_last_digit_and_nothing_more() -> None:
    a = {"groups": {"level": {"edges": [[-36.155914, -10.145368]]}}, "measured": [{"max": {"level": 0.236}}]}
    last_digit = {
        "groups": {"level": {"edges": [[-36.155915, -10.145368]]}},
        "measured": [{"max": {"level": 0.237}}],
    }
    moved = {
        "groups": {"level": {"edges": [[-36.1558, -10.145368]]}},
        "measured": [{"max": {"level": 0.236}}],
    }
    assert reference._first_difference(a, last_digit, "features") is None
    assert (
        reference._first_difference(a, moved, "features")
        == "features.groups.level.edges[0][0]: -36.155914 vs -36.1558"
    )
