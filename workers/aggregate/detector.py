"""Per-device keyword detection over a device's overlapping windows: pure, no Kafka, no clock.

A device's state is a JSON-able dict (it lives in a faust table backed by a changelog topic):
the last windows' label scores, the ids of recent results, and until when the device is
refractory. `Detector.observe` adds one result and says whether a keyword event fires.
Each window gives every keyword an evidence score: its probability minus `margin` × the
strongest other label's (`_unknown_` and `_background_` included, so their mass counts against
a keyword); the evidence is pooled (`mean` or `max`) over the windows of the last
`smooth_windows` hops, and the best keyword fires when its pooled evidence reaches `threshold`,
at least `min_windows` windows are present and the device is not refractory. With `peak` the
event waits until the pooled track stops rising and rests on the peak's windows.
The same code runs inside the faust agent and in the offline tuner, so tuned numbers hold.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from workers.config.spec import EventsSpec

WINDOW_MS = 1000  # a frame is one second; `captured_ms` is the capture time of its last sample

State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Window:
    """One result as the detector needs it: id, capture time of its last sample, label scores."""

    id: str
    captured_ms: int
    scores: dict[str, float]


@dataclass(frozen=True, slots=True)
class Detection:
    """A keyword utterance heard on one device (the aggregator turns it into a `schemas.Event`)."""

    id: str
    device: str
    keyword: str
    start_ms: int
    end_ms: int
    score: float
    frames: list[str]


def new_state() -> State:
    return {
        "windows": [],
        "seen": [],
        "quiet_until_ms": None,
        "newest_ms": None,
        "fired": [],
        "pending": None,
    }


class Detector:
    """Smoothing + threshold + refractory period, per device, over results in capture order."""

    def __init__(self, spec: EventsSpec) -> None:
        self.spec = spec
        self.span_ms = spec.smooth_windows * spec.hop_ms
        # Results older than this behind the newest one can no longer change a decision.
        self.horizon_ms = self.span_ms + WINDOW_MS
        self.duplicates = 0
        self.stale = 0

    def observe(self, state: State, device: str, window: Window) -> Detection | None:
        """Add `window` to `state` (mutated in place); the event it completes, if any."""
        seen: list[str] = state["seen"]
        if window.id in seen:
            self.duplicates += 1
            return None
        seen.append(window.id)
        del seen[: max(0, len(seen) - self.spec.dedupe_windows)]
        newest = state["newest_ms"]
        if newest is not None and window.captured_ms < newest - self.horizon_ms:
            self.stale += 1  # too late to matter; remembered as seen, not scored
            return None
        rows: list[list[Any]] = state["windows"]
        rows.append([window.id, window.captured_ms, _rounded(window.scores)])
        rows.sort(key=lambda r: (r[1], r[0]))
        now = rows[-1][1]
        state["newest_ms"] = now
        del rows[: sum(1 for r in rows if r[1] <= now - self.horizon_ms)]
        return self._decide(state, device, now)

    def recent(self, state: State, now: int) -> list[list[Any]]:
        """The windows of the last `smooth_windows` hops up to `now`."""
        return [r for r in state["windows"] if now - self.span_ms < r[1] <= now]

    def pooled(self, recent: list[list[Any]]) -> dict[str, tuple[float, float]]:
        """keyword → (pooled evidence, pooled probability) over `recent` windows."""
        margin = self.spec.margin
        tops = [_top_two(scores) for _, _, scores in recent] if margin else []
        keywords = {k for _, _, scores in recent for k in scores if not k.startswith("_")}
        out: dict[str, tuple[float, float]] = {}
        for k in keywords:
            probs = [scores.get(k, 0.0) for _, _, scores in recent]
            if margin:
                # The strongest other label: the top one, or the runner-up where k is the top.
                evidence = [
                    p - margin * (second if first == k else top)
                    for p, (first, top, second) in zip(probs, tops, strict=True)
                ]
            else:
                evidence = probs
            if self.spec.pool == "max":
                out[k] = (max(evidence), max(probs))
            else:
                out[k] = (sum(evidence) / len(recent), sum(probs) / len(recent))
        return out

    def best(self, state: State, now: int) -> tuple[str, float, float, list[list[Any]]] | None:
        """(keyword, evidence, probability, windows) of the strongest keyword at `now`, if any:
        the one whose pooled evidence is furthest above its own threshold, among those that are
        the top label of at least `min_top` of the windows."""
        recent = self.recent(state, now)
        if len(recent) < self.spec.min_windows:
            return None
        pooled = self.pooled(recent)
        if self.spec.min_top:
            tops = Counter(_top_two(scores)[0] for _, _, scores in recent)
            pooled = {k: v for k, v in pooled.items() if tops[k] >= self.spec.min_top}
        if not pooled:
            return None
        of = self.spec.threshold_of
        keyword, (evidence, prob) = max(pooled.items(), key=lambda kv: (kv[1][0] - of(kv[0]), kv[0]))
        return keyword, evidence, prob, recent

    def _decide(self, state: State, device: str, now: int) -> Detection | None:
        quiet = state["quiet_until_ms"]
        if quiet is not None and now <= quiet:
            return None
        best = self.best(state, now)
        pending = state.get("pending")
        if pending is not None:
            keyword, evidence, at = pending
            if best is not None and best[0] == keyword and best[1] > evidence and now - at <= self.span_ms:
                state["pending"] = [keyword, best[1], now]  # still rising: wait for the peak
                return None
            state["pending"] = None
            peak = self.best(state, at)
            if peak is not None and peak[0] == keyword:
                return self._fire(state, device, at, peak)
        if best is None or best[1] < self.spec.threshold_of(best[0]):
            return None
        if self.spec.peak:
            state["pending"] = [best[0], best[1], now]
            return None
        return self._fire(state, device, now, best)

    def _fire(
        self, state: State, device: str, now: int, best: tuple[str, float, float, list[list[Any]]]
    ) -> Detection:
        keyword, _, prob, recent = best
        half = self.spec.threshold_of(keyword) / 2
        support = [r for r in recent if r[2].get(keyword, 0.0) >= half] or recent
        # The keyword lies in every window that hears it well: their intersection bounds it.
        start = max(r[1] for r in support) - WINDOW_MS
        end = min(r[1] for r in support)
        if end - start < self.spec.hop_ms:
            centre = (start + end) // 2
            start, end = centre - self.spec.hop_ms // 2, centre + self.spec.hop_ms // 2
        state["quiet_until_ms"] = now + self.spec.refractory_ms
        event_id = f"{device}@{start}"
        fired: list[str] = state["fired"]
        fired.append(event_id)
        del fired[: max(0, len(fired) - 16)]
        return Detection(event_id, device, keyword, start, end, round(prob, 6), [r[0] for r in support])


def _top_two(scores: dict[str, float]) -> tuple[str, float, float]:
    """(label, score) of the best label and the runner-up's score."""
    first, top, second = "", 0.0, 0.0
    for label, v in scores.items():
        if v > top:
            first, top, second = label, v, top
        elif v > second:
            second = v
    return first, top, second


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    """Every label of the result's top-k: `_unknown_`/`_background_` never fire, but count against."""
    return {k: round(float(v), 6) for k, v in scores.items()}
