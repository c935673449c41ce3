"""The acoustic build's recipes: the default reproduces the served 1.1.0, the candidate differs only
in what `recipes.py` says, and a shifted word never leaves the window by more than it allows."""

from __future__ import annotations

import numpy as np
import pytest

from models import MODELS_DIR
from models.toolchain.acoustic import augment, recipes
from pipelines.acoustic import recordings
from schemas.card import ModelCard, sha256_of


def test_the_default_recipe_is_the_served_one() -> None:
    assert recipes.RECIPE is recipes.RECIPES["1.1.0"]  # ONTIME_ACOUSTIC_RECIPE unset in tests
    served = ModelCard.load(MODELS_DIR / "acoustic" / "student-int8")
    assert served.version == recipes.RECIPE.version
    old, new = recipes.RECIPES["1.1.0"], recipes.RECIPES["1.2.0"]
    assert (old.open_set, old.max_shift, old.max_cut, old.room_share) == (False, 2400, 0.0, 0.0)
    assert new.open_set and new.max_shift == 6400 and 0 < new.max_cut < 0.5
    # Full strength: the candidate trains as long as the served recipe, on as many copies.
    assert (new.epochs, new.copies, new.unlabelled_copies) == (old.epochs, old.copies, old.unlabelled_copies)
    # Its threshold is calibrated on a speaker it never trains on; 1.1.0 keeps the by-file split.
    assert old.calib_speaker is None
    assert new.calib_speaker in recordings.SPEECH_TRAIN_DIRS


@pytest.mark.parametrize("n", [2000, 8000, 15000])
@pytest.mark.parametrize("shift", [-20000, -6400, 0, 3000, 20000])
def test_a_placed_word_keeps_all_but_max_cut_of_itself(n: int, shift: int) -> None:
    word = np.ones(n, dtype=np.float32)
    frame = augment.place(word, shift)
    assert frame.shape == (16_000,)
    assert frame.sum() >= n - int(augment.MAX_CUT * n)
    if abs(shift) <= (16_000 - n) // 2:
        assert frame.sum() == n  # within the slack nothing is cut, whatever the recipe


def test_the_candidate_pair_is_on_disk_and_verified() -> None:
    for variant in ("student-int8", "postprocess"):
        d = MODELS_DIR / "acoustic" / variant / "versions" / "1.2.0"
        card = ModelCard.load(d)
        assert card.version == "1.2.0" and card.sha256 == sha256_of(d / card.file)
        extra = card.model_extra or {}
        assert str(extra.get("serving", "")).startswith("candidate, not served")


@pytest.mark.parametrize("held_out", [None, recipes.RECIPES["1.2.0"].calib_speaker])
def test_the_drift_reference_counts_the_speech_windows_the_build_trains_on(held_out: str | None) -> None:
    from models.toolchain.acoustic import reference

    windows = recordings.real_clips("speech_train", held_out=held_out)
    assert reference.SPEECH_TRAIN_WINDOWS[held_out] == len(windows)
