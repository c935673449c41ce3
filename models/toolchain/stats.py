"""Accuracy with a 95 % confidence interval, so a compression drop can be told from noise."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from schemas.card import Interval

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of a proportion: well-behaved near 0 and 1, unlike the normal one."""
    if n <= 0:
        raise ValueError("an interval needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half), n=n)


def accuracy(predicted: npt.ArrayLike, labels: npt.ArrayLike) -> Interval:
    """Top-1 accuracy of predicted class ids against true ids, with its Wilson interval."""
    pred = np.asarray(predicted).reshape(-1)
    true = np.asarray(labels).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {true.shape[0]} labels")
    return wilson_interval(int(np.count_nonzero(pred == true)), int(true.shape[0]))


def accuracy_from_logits(logits: npt.ArrayLike, labels: npt.ArrayLike) -> Interval:
    """Top-1 accuracy of a [N, classes] score matrix."""
    return accuracy(np.asarray(logits).argmax(axis=-1), labels)


def drop_points(parent: Interval, child: Interval) -> float:
    """Accuracy drop of a variant vs its parent in percentage points (positive = worse)."""
    return round((parent.value - child.value) * 100.0, 3)
