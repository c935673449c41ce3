"""Real Fashion-MNIST images with known labels, from the Debian package `dataset-fashion-mnist`.

The device simulator publishes the test split as cameras would (one PNG per frame), the demo
scores results against the labels, and the model toolchain trains on the training split. Only
numpy and the standard library are needed, so this runs without the toolchain.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from pipelines.vision import png

DATA_DIR: Final = Path("/usr/share/datasets/fashion-mnist")
PACKAGE: Final = "dataset-fashion-mnist"
LABELS: Final = (
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
)
SIDE: Final = 28
_FILES: Final = {"train": "train", "test": "t10k"}


class DatasetMissing(RuntimeError):
    """The Debian package that holds Fashion-MNIST is not installed."""


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


def load_pixels(split: str, data_dir: Path = DATA_DIR) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """(pixels [N,28,28] uint8, labels [N] int64) of `train` (60 000) or `test` (10 000)."""
    if not available(data_dir):
        raise DatasetMissing(
            f"{data_dir} not found: install the Debian package {PACKAGE!r} (apt-get install {PACKAGE})"
        )
    prefix = _FILES[split]
    pixels = _idx(data_dir / f"{prefix}-images-idx3-ubyte.gz", 0x803, 16).reshape(-1, SIDE, SIDE)
    labels = _idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz", 0x801, 8).astype(np.int64)
    if len(pixels) != len(labels):
        raise ValueError(f"{split}: {len(pixels)} images but {len(labels)} labels")
    return pixels, labels


@dataclass(frozen=True)
class Image:
    """One labelled 28×28 gray image, and the PNG a camera would publish for it."""

    label: str
    pixels: npt.NDArray[np.uint8]
    source: str

    @property
    def payload(self) -> bytes:
        return png.encode(self.pixels)


def camera_frames(split: str = "eval") -> list[Image]:
    """The labelled images devices publish: "eval" is the 10 000-image test split, in file order."""
    if split not in ("eval", "test"):
        raise ValueError(f"split must be eval (the test split), not {split!r}")
    pixels, labels = load_pixels("test")
    return [Image(LABELS[int(y)], pixels[i], f"fashion-mnist t10k #{i}") for i, y in enumerate(labels)]
