"""Open-set rejection: when the best keyword is not sure enough, the answer is `_unknown_`.

The rule lives in the postprocess graph (`export.build_postprocess`): with calibrated
probabilities p = softmax(logits / T), a frame whose top-1 is a keyword k with p_k < threshold is
answered `_unknown_` with score 1 - p_k (the probability that it is not k). The threshold is
chosen on calibration data only (held-out voices and words, held-out real speakers' windows),
never on an evaluation set. The trade-off over every threshold is drawn as a DET-style curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.toolchain.stats import accuracy
from schemas.card import Interval

GRID = np.round(np.linspace(0.0, 0.99, 100), 2)
MAX_CALIBRATION_FAR = 0.03  # below the 5 % target: the calibration speakers are not the new ones


def accepted(probs: np.ndarray, n_keywords: int, threshold: float) -> np.ndarray:
    """Index of the keyword each frame is answered with, or -1 (not a keyword, or rejected)."""
    top = probs.argmax(axis=1)
    best = probs[:, :n_keywords].max(axis=1)
    ok = (top < n_keywords) & (best >= threshold)
    return np.where(ok, top, -1)


@dataclass(frozen=True)
class TradeOff:
    """False accepts on non-keyword speech and false rejects on keywords, per threshold."""

    thresholds: np.ndarray
    far: np.ndarray  # share of non-keyword clips answered with some keyword
    frr: np.ndarray  # share of keyword clips not answered with their own keyword
    n_negative: int
    n_keyword: int

    def at(self, threshold: float) -> tuple[float, float]:
        i = int(np.argmin(np.abs(self.thresholds - threshold)))
        return float(self.far[i]), float(self.frr[i])


def trade_off(
    kw_probs: np.ndarray, kw_labels: np.ndarray, neg_probs: np.ndarray, n_keywords: int
) -> TradeOff:
    far = np.array([(accepted(neg_probs, n_keywords, t) >= 0).mean() for t in GRID])
    frr = np.array([(accepted(kw_probs, n_keywords, t) != kw_labels).mean() for t in GRID])
    return TradeOff(GRID, far, frr, len(neg_probs), len(kw_probs))


def choose_threshold(calibration: list[TradeOff], max_far: float = MAX_CALIBRATION_FAR) -> float:
    """The lowest threshold at which every calibration set's false accept rate is <= max_far
    (lowest, so as few keywords as possible are rejected)."""
    worst = np.max([c.far for c in calibration], axis=0)
    ok = np.flatnonzero(worst <= max_far)
    return float(GRID[ok[0]]) if ok.size else float(GRID[-1])


def false_accepts(probs: np.ndarray, n_keywords: int, threshold: float) -> Interval:
    """Share of non-keyword rows answered with some keyword, with its Wilson interval."""
    return _share((accepted(probs, n_keywords, threshold) >= 0).astype(np.int64))


def false_rejects(probs: np.ndarray, labels: np.ndarray, n_keywords: int, threshold: float) -> Interval:
    """Share of keyword rows not answered with their own keyword, with its Wilson interval."""
    return _share((accepted(probs, n_keywords, threshold) != labels).astype(np.int64))


def _share(events: np.ndarray) -> Interval:
    """The share of ones in `events` with its 95 % Wilson interval (stats.accuracy of y == 1)."""
    return accuracy(events, np.ones_like(events))


def tie_rate(logits: np.ndarray) -> float:
    """Share of rows whose two largest logits are exactly equal (argmax then picks by index)."""
    top2 = np.sort(logits, axis=1)[:, -2:]
    return float((top2[:, 0] == top2[:, 1]).mean())


def plot(curves: dict[str, TradeOff], threshold: float, title: str, path: Path) -> Path:
    """False reject rate against false accept rate over the threshold, the served point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4.4), dpi=100)
    for name, c in curves.items():
        (line,) = ax.plot(
            100 * c.far, 100 * c.frr, label=f"{name} (neg n={c.n_negative}, kw n={c.n_keyword})"
        )
        far, frr = c.at(threshold)
        ax.plot([100 * far], [100 * frr], "o", color=line.get_color())
    ax.axvline(5, color="grey", lw=0.6, ls=":")
    ax.axhline(5, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("false accepts: non-keyword speech answered as a keyword (%)")
    ax.set_ylabel("false rejects: keywords not answered right (%)")
    ax.set_xlim(0, 60)
    ax.set_ylim(0, 60)
    ax.set_title(f"{title}; dots: served threshold {threshold:.2f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp in the PNG metadata, so a rebuild writes the same bytes.
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
