"""The training data recipe's constants and its real-noise mix, shared by the build and `reference`.

Kept free of torch so `ontime models reference acoustic` can rebuild the training frames without it.
"""

from __future__ import annotations

import numpy as np

from .augment import NoiseBank

SEED = 20261124
N_UNLABELLED = 100_000  # i.e. every window there is (~6 200)
UNLABELLED_COPIES = 5


def noisy(x: np.ndarray, noise: NoiseBank, rng: np.random.Generator) -> np.ndarray:
    """Real speech + a real noise window at 0-20 dB SNR."""
    n = noise.window(rng)
    rms_x = float(np.sqrt(np.mean(x**2)) + 1e-9)
    n = n * rms_x / float(np.sqrt(np.mean(n**2)) + 1e-9) / 10 ** (rng.uniform(0, 20) / 20)
    return np.clip(x + n, -1, 1).astype(np.float32)
