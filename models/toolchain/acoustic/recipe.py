"""The training data recipe's constants and its real-noise mix, shared by the build and `reference`.

Kept free of torch so `ontime models reference acoustic` can rebuild the training frames without it.
"""

from __future__ import annotations

import numpy as np

from .augment import NoiseBank
from .recipes import RECIPE

SEED = 20261124
N_UNLABELLED = 100_000  # i.e. every window there is (~6 200)
UNLABELLED_COPIES = RECIPE.unlabelled_copies  # real unlabelled windows: clean + noisy copies
# The synthetic training set: voices per keyword and per fixed unknown word, augmented copies of
# each utterance, background-only frames (recipes.RECIPE).
TRAIN_PER_KEYWORD = 120
TRAIN_PER_UNKNOWN = 30
TRAIN_COPIES = RECIPE.copies
TRAIN_BACKGROUND = RECIPE.background
# Open-set training (the 1.2.0 candidate): 4 voices for each of the 530 training words of
# negatives.extra_words, and the real speech windows of `real_clips("speech_train", held_out=
# CALIB_SPEAKER)` (1.2.0: the Italian speaker) as `_unknown_` teacher and student negatives.
OPEN_SET_TRAINING = RECIPE.open_set
EXTRA_TRAIN_VOICES = 4 if OPEN_SET_TRAINING else 0
CALIB_SPEAKER = RECIPE.calib_speaker  # calibrates the rejection threshold only (1.2.0: Russian)


def noisy(x: np.ndarray, noise: NoiseBank, rng: np.random.Generator) -> np.ndarray:
    """Real speech + a real noise window at 0-20 dB SNR."""
    n = noise.window(rng)
    rms_x = float(np.sqrt(np.mean(x**2)) + 1e-9)
    n = n * rms_x / float(np.sqrt(np.mean(n**2)) + 1e-9) / 10 ** (rng.uniform(0, 20) / 20)
    return np.clip(x + n, -1, 1).astype(np.float32)
