"""Fashion-MNIST from the Debian `dataset-fashion-mnist` package, as numpy arrays (no torch).

Images are float32 [N, 1, 28, 28] scaled to [0, 1] (pixels / 255), the models' `image` input.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import numpy.typing as npt

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
LABELS = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
_FILES = {"train": "train", "test": "t10k"}


def available(data_dir: Path = DATA_DIR) -> bool:
    return all(
        (data_dir / f"{p}-{k}-ubyte.gz").is_file()
        for p in _FILES.values()
        for k in ("images-idx3", "labels-idx1")
    )


def _idx(path: Path, magic: int, header: int) -> npt.NDArray[np.uint8]:
    raw = gzip.decompress(path.read_bytes())
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: magic {found:#x}, expected {magic:#x}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header)


def load(split: str, data_dir: Path = DATA_DIR) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """(images [N,1,28,28] float32 in [0,1], labels [N] int64) of `train` (60 000) or `test` (10 000)."""
    prefix = _FILES[split]
    pixels = _idx(data_dir / f"{prefix}-images-idx3-ubyte.gz", 0x803, 16)
    labels = _idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz", 0x801, 8).astype(np.int64)
    images = pixels.reshape(-1, 1, 28, 28).astype(np.float32) / np.float32(255.0)
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels
