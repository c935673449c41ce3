"""Drift statistics: per-frame measures, binning against a reference, PSI, and a sliding window.

The toolchain computes a card's reference with these functions and a worker computes its live
window with the same ones, so both sides bin identical quantities. Everything is vectorised over
the batch: a batch costs a few numpy passes, never a Python loop per frame.

PSI (population stability index) of one dimension, reference shares p and live shares q over the
same bins: sum (q - p) * ln(q / p). A group's score is the mean PSI over its dimensions (40 mel
bands, or one level). 0 means the same distribution; the usual reading is < 0.1 stable, 0.1-0.25
a moderate shift, > 0.25 a large one; each card states the threshold it chose on data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np

from schemas.drift import GroupReference

SMOOTHING = 0.5
"""Jeffreys pseudo-count per bin, so an empty bin gives a finite PSI."""

LEVEL_FLOOR_DB = -100.0
"""Digital silence reads as this many dBFS instead of -inf."""


def block_power(tensor: np.ndarray, block: int) -> np.ndarray:
    """float64 [N, B]: mean square of each `block` samples of each row, in one pass."""
    n = tensor.shape[0]
    flat = tensor.reshape(n, -1)
    usable = flat.shape[1] - flat.shape[1] % block
    blocks = flat[:, :usable].reshape(n, -1, block)
    # float32 accumulation over 160 samples is plenty for a level in dB.
    return np.asarray(np.einsum("nbs,nbs->nb", blocks, blocks).astype(np.float64) / block)


def measure(
    group: GroupReference, tensor: np.ndarray, shared: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """float64 [N, D]: the group's measure of each row of a batch `tensor` (batch axis first).

    `shared` lets the level and silence groups of one batch compute the block power once."""
    n = tensor.shape[0]
    p = group.params
    if group.measure in ("rms_dbfs", "silence_share"):
        block = int(p.get("block", 160))
        if shared is None:
            shared = {}
        if block not in shared:
            shared[block] = block_power(tensor, block)
        power = shared[block]
        if group.measure == "rms_dbfs":
            level = 10.0 * np.log10(power.mean(axis=1) + 10 ** (LEVEL_FLOOR_DB / 10))
            return np.asarray(level[:, None])
        quiet = power < 10 ** (float(p.get("floor_db", -60.0)) / 10)
        return np.asarray(quiet.mean(axis=1, dtype=np.float64)[:, None])
    if group.measure == "axis_mean":
        return np.asarray(tensor.mean(axis=-1).astype(np.float64).reshape(n, -1))
    logits = tensor.reshape(n, -1).astype(np.float64)
    if group.measure == "top1_index":
        return np.asarray(logits.argmax(axis=1).astype(np.float64)[:, None])
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray((1.0 / z.sum(axis=1))[:, None])  # the top entry of z is exp(0) = 1


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """int64 [D, bins]: how many of `values` [N, D] fall in each bin of `edges` [D, bins - 1]."""
    d, inner = edges.shape
    bins = inner + 1
    index = (values[:, :, None] >= edges[None, :, :]).sum(axis=2)  # [N, D] bin of each value
    flat = (index + np.arange(d) * bins).ravel()
    return np.asarray(np.bincount(flat, minlength=d * bins).reshape(d, bins))


def shares(counts: np.ndarray) -> np.ndarray:
    """Smoothed bin shares of `counts` [D, bins] (rows sum to 1)."""
    c = counts.astype(np.float64) + SMOOTHING
    return np.asarray(c / c.sum(axis=1, keepdims=True))


def psi(reference: np.ndarray, counts: np.ndarray) -> float:
    """Mean over dimensions of PSI(reference shares [D, bins], live `counts` [D, bins])."""
    live = shares(counts)
    return float(((live - reference) * np.log(live / reference)).sum(axis=1).mean())


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """[D, bins - 1] edges at the reference's quantiles (equal-mass bins where values are distinct)."""
    qs = np.arange(1, bins) / bins
    return np.asarray(np.quantile(values, qs, axis=0).T.copy())


class GroupWindow:
    """Bin counts and sums of one group over the last `blocks` blocks of frames."""

    def __init__(self, group: GroupReference, blocks: int) -> None:
        self.group = group
        self.edges = np.asarray(group.edges, dtype=np.float64)
        self.reference = np.asarray(group.probs, dtype=np.float64)
        shape = self.reference.shape
        self.total = np.zeros(shape, dtype=np.int64)
        self.sum = np.zeros(shape[0])
        self.frames = 0
        self.open = np.zeros(shape, dtype=np.int64)
        self.open_sum = np.zeros(shape[0])
        self.open_frames = 0
        self.closed: deque[tuple[np.ndarray, np.ndarray, int]] = deque()
        self.blocks = blocks

    def add(self, tensor: np.ndarray, shared: dict[int, np.ndarray] | None = None) -> None:
        values = measure(self.group, tensor, shared)
        counts = bin_counts(values, self.edges)
        total = values.sum(axis=0)
        self.open += counts
        self.open_sum += total
        self.open_frames += len(values)
        self.total += counts
        self.sum += total
        self.frames += len(values)

    def close_block(self) -> None:
        """The open block joins the window; the oldest block leaves once there are `blocks`."""
        self.closed.append((self.open, self.open_sum, self.open_frames))
        self.open = np.zeros_like(self.open)
        self.open_sum = np.zeros_like(self.open_sum)
        self.open_frames = 0
        while len(self.closed) > self.blocks:
            counts, total, frames = self.closed.popleft()
            self.total -= counts
            self.sum -= total
            self.frames -= frames

    def score(self) -> float:
        return psi(self.reference, self.total)

    def mean_shift(self) -> np.ndarray:
        """[D] (live mean - reference mean) / reference standard deviation."""
        live = self.sum / max(1, self.frames)
        ref = np.asarray(self.group.mean)
        sd = np.sqrt(np.maximum(np.asarray(self.group.var), 1e-12))
        return np.asarray((live - ref) / sd)


class DriftWindow:
    """Sliding window of about `window_frames` frames over several groups, moved block by block.

    A block closes once it holds `window_frames / blocks` frames (whole batches); the window is
    the last `blocks` closed blocks plus the open one. Scores need at least `min_frames`.
    """

    def __init__(
        self, groups: Mapping[str, GroupReference], window_frames: int, blocks: int = 8, min_frames: int = 0
    ) -> None:
        self.groups = {name: GroupWindow(g, blocks) for name, g in groups.items()}
        self.block_frames = max(1, window_frames // blocks)
        self.min_frames = min_frames or window_frames // 2
        self._open = 0

    def add(self, tensors: Mapping[str, np.ndarray | None]) -> bool:
        """Add a batch: `tensors` maps "input"/"output" to a batch tensor (None: none this batch).

        True when this batch closed a block (the window moved: time to refresh the scores)."""
        shared: dict[str, dict[int, np.ndarray]] = {"input": {}, "output": {}}
        for window in self.groups.values():
            tensor = tensors.get(window.group.tensor)
            if tensor is not None and len(tensor):
                window.add(tensor, shared[window.group.tensor])
        self._open += max((len(t) for t in tensors.values() if t is not None), default=0)
        if self._open >= self.block_frames:
            for window in self.groups.values():
                window.close_block()
            self._open = 0
            return True
        return False

    def frames(self, name: str) -> int:
        return self.groups[name].frames

    def scores(self) -> dict[str, float]:
        """PSI per group; NaN where the window holds fewer than `min_frames` frames of it."""
        return {
            name: (w.score() if w.frames >= self.min_frames else float("nan"))
            for name, w in self.groups.items()
        }
