"""A DLQ-rate circuit breaker: a systemic fault must not drain the input topic into the DLQ.

A bad model deploy, a broken runtime or onnxruntime out of memory make *every* frame fail with
`model-error`, and the at-least-once loop would dead-letter the whole topic and commit past it.
Frames a device got wrong (bad content type, wrong shape) are that device's problem and never
trip the breaker, so one hostile device cannot stop a stage for everyone. When the systemic share
of the last `window` frames reaches `threshold` (after at least `min_frames`), the breaker opens:
the worker pauses its partitions, reports not ready and says why. After `cooldown_s` it lets one
batch through (half-open); a healthy batch closes it, a failing one opens it again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from workers.messages.reasons import MODEL_ERROR

SYSTEMIC_REASONS = frozenset({MODEL_ERROR})


class DlqBreaker:
    """Tracks the recent share of systemic dead letters and decides when input must stop."""

    def __init__(
        self,
        *,
        window: int = 200,
        threshold: float = 0.5,
        min_frames: int = 50,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.min_frames = min_frames
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._recent: deque[bool] = deque(maxlen=window)
        self._opened_at: float | None = None
        self.trips = 0
        self.reason = ""

    def record(self, reasons: Iterable[str | None]) -> None:
        """One settled batch: a reason per frame (None for frames that were answered or shed)."""
        outcomes = [r in SYSTEMIC_REASONS for r in reasons]
        if not outcomes:
            return
        if self._opened_at is not None:  # the half-open probe batch decides
            if sum(outcomes) / len(outcomes) >= self.threshold:
                self._open(sum(outcomes), len(outcomes))
            else:
                self._opened_at = None
                self.reason = ""
                self._recent.clear()
            return
        self._recent.extend(outcomes)
        bad = sum(self._recent)
        if len(self._recent) >= self.min_frames and bad / len(self._recent) >= self.threshold:
            self._open(bad, len(self._recent))

    def _open(self, bad: int, seen: int) -> None:
        self._opened_at = self._clock()
        self.trips += 1
        self.reason = (
            f"circuit open: {bad} of the last {seen} frames failed in the model ({MODEL_ERROR}); "
            f"input paused, retrying one batch every {self.cooldown_s:.0f} s"
        )

    @property
    def open(self) -> bool:
        return self._opened_at is not None

    def allows_probe(self) -> bool:
        """Open, but the cool-down passed: one batch may go through."""
        return self._opened_at is not None and self._clock() - self._opened_at >= self.cooldown_s
