"""Model cards: what a committed ONNX artifact is, where it came from, and what it measured.

A card sits beside every `models/<pipeline>/<variant>/model.onnx` as `card.json`. Workers read
only the identity part (name, version, sha256, tensors, labels) and refuse a file whose sha256
differs; the toolchain fills in the measured part.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from schemas.drift import DriftReference


class TensorSpec(BaseModel):
    """One named input or output; `None` in a shape is a dynamic axis (the batch)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: str
    shape: list[int | str | None]


class Interval(BaseModel):
    """A measured proportion with its 95 % confidence interval (Wilson)."""

    model_config = ConfigDict(extra="forbid")
    value: float
    low: float
    high: float
    n: int


class LatencyStat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch: int
    p50_ms: float
    p99_ms: float
    threads: int


class Lineage(BaseModel):
    model_config = ConfigDict(extra="allow")
    parent: str | None = None
    teacher: str | None = None
    distillation: str | None = None
    pruning_ratio: float | None = None
    quantization: str | None = None
    calibration_set: str | None = None
    notes: str | None = None


class ModelCard(BaseModel):
    """Identity and measured facts of one model artifact."""

    model_config = ConfigDict(extra="allow")
    name: str
    version: str
    sha256: str
    file: str = "model.onnx"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str] = Field(default_factory=list)
    parameters: int | None = None
    macs: int | None = None
    file_bytes: int | None = None
    accuracy: dict[str, Interval] = Field(default_factory=dict)
    accuracy_drop_vs_parent: dict[str, float] = Field(default_factory=dict)
    latency: list[LatencyStat] = Field(default_factory=list)
    lineage: Lineage = Field(default_factory=Lineage)
    notes: list[str] = Field(default_factory=list)
    reference: DriftReference | None = None  # training-data statistics for drift (schemas/drift.py)

    @classmethod
    def load(cls, variant_dir: Path) -> ModelCard:
        return cls.model_validate_json((variant_dir / "card.json").read_text())

    def save(self, variant_dir: Path) -> None:
        (variant_dir / "card.json").write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
