"""A tiny speech/background gate for early exit: frames it calls background skip the classifier.

The threshold on p(background) is chosen on calibration data (never on evaluation data) so that
at most `MAX_FALSE_EXIT` of speech frames would be dropped; the card reports how that held on
real speech and how much real background it lets the pipeline skip.
"""

from __future__ import annotations

import numpy as np

from pipelines.acoustic.recordings import BACKGROUND, LABELS

from .nets import KwsTcn

GATE_WIDTHS = (16, 16, 16, 16, 16)
GATE_LABELS = ("_speech_", "_background_")
MAX_FALSE_EXIT = 0.005


def gate_targets(y: np.ndarray) -> np.ndarray:
    """Class labels -> 1 for background, 0 for anything spoken (keyword or unknown)."""
    return (y == LABELS.index(BACKGROUND)).astype(np.int64)


def new_gate() -> KwsTcn:
    return KwsTcn(GATE_WIDTHS, len(GATE_LABELS), dropout=0.0)


def choose_threshold(p_background: np.ndarray, is_background: np.ndarray) -> float:
    """Lowest threshold whose rate of speech frames at or above it is <= MAX_FALSE_EXIT."""
    speech = np.sort(p_background[~is_background])
    if len(speech) == 0:
        return 0.5
    k = int(np.floor(MAX_FALSE_EXIT * len(speech)))
    # Threshold just above the (k+1)-th highest speech score: at most k speech frames exit early.
    highest = speech[::-1]
    return float(min(0.999, max(0.5, np.nextafter(highest[k], 1.0))))
