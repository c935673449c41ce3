"""Fashion-MNIST as the models take it: float32 [N, 1, 28, 28] in [0, 1] (pixels / 255), no torch.

The files are read by `pipelines.vision.fashion_mnist` (Debian `dataset-fashion-mnist`), the same
reader the device simulator uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipelines.vision.fashion_mnist import DATA_DIR, available, load_pixels
from pipelines.vision.fashion_mnist import LABELS as _LABELS

LABELS = list(_LABELS)
__all__ = ["DATA_DIR", "LABELS", "available", "load", "load_pixels"]


def load(split: str, data_dir: Path = DATA_DIR) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """(images [N,1,28,28] float32 in [0,1], labels [N] int64) of `train` (60 000) or `test` (10 000)."""
    pixels, labels = load_pixels(split, data_dir)
    return pixels[:, None, :, :].astype(np.float32) / np.float32(255.0), labels
