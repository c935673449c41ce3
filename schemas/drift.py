"""The drift reference a model card carries: what the model's inputs and outputs looked like in training.

A card's optional `reference` block lists feature groups. Each group names a measure (a function
of the input or output tensor, one value per frame and dimension, see
`workers/telemetry/drift_stats.py`), the bin edges and bin shares of those values over the training
frames, their mean and variance, and the PSI threshold above which a live window counts as drifted.
`ontime models reference <pipeline>` fills it; a worker compares its live window against it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Measure = Literal["rms_dbfs", "silence_share", "axis_mean", "top1_index", "top1_prob"]
"""rms_dbfs / silence_share: level and quiet share of a waveform row; axis_mean: mean over the
last axis (per mel band); top1_index / top1_prob: argmax and its softmax probability of logits."""


class GroupReference(BaseModel):
    """One feature group: D dimensions, each binned into the same number of bins."""

    model_config = ConfigDict(extra="forbid")
    measure: Measure
    tensor: Literal["input", "output"]
    params: dict[str, float] = Field(default_factory=dict)
    edges: list[list[float]]  # [D][bins - 1], ascending: bin i holds edges[i-1] <= v < edges[i]
    probs: list[list[float]]  # [D][bins], the training frames' share per bin (each row sums to 1)
    mean: list[float]  # [D] over the training frames
    var: list[float]  # [D]
    threshold: float  # PSI (mean over the D dimensions) above which a window is drifted
    what: str = ""


class WindowScores(BaseModel):
    """PSI per group measured on windows of one kind of stream (how the thresholds were chosen)."""

    model_config = ConfigDict(extra="forbid")
    stream: str
    drifted: bool
    windows: int
    max: dict[str, float]
    median: dict[str, float]


class DriftReference(BaseModel):
    """Reference statistics of a model's training data, and the evidence its thresholds rest on."""

    model_config = ConfigDict(extra="forbid")
    source: str  # which frames, from which command
    frames: int
    window_frames: int  # the live window the thresholds were chosen for
    groups: dict[str, GroupReference]
    measured: list[WindowScores] = Field(default_factory=list)
