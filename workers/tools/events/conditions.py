"""The four conditions of `ontime bench events` (clean, noisy, words, background), in one place.

The benchmark streams them through the pipeline; the offline replica (diagnose.py) builds the
very same audio (same plans, seeds and device names) and runs the served models in process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.config.spec import EventsSpec
from workers.tools.events.scoring import Truth
from workers.tools.stream import StreamPlan


@dataclass
class Condition:
    name: str
    plan: StreamPlan
    devices: int
    truths: list[Truth] = field(default_factory=list)
    frames: set[str] = field(default_factory=set)
    words: int = 0
    names: list[str] = field(default_factory=list)

    def device_names(self) -> list[str]:
        return [f"{self.name}-{d:02d}" for d in range(self.devices)]


def conditions(
    speech_minutes: float, background_hours: float, snr_db: float, devices: int = 4
) -> list[Condition]:
    """clean (keywords over a quiet room), noisy (same at `snr_db`), words (non-keywords only),
    background (background only, 10-minute streams), more (digits by more speakers, quiet room)."""
    per = max(30.0, speech_minutes * 60 / devices)
    slots = int((per - 4) // 4)
    bg_devices = max(1, round(background_hours * 6))  # 10-minute streams
    return [
        Condition("clean", StreamPlan(seconds=per, keywords=slots), devices),
        Condition("noisy", StreamPlan(seconds=per, keywords=slots, snr_db=snr_db), devices),
        Condition("words", StreamPlan(seconds=per, keywords=0, distractors=slots), devices),
        Condition(
            "background", StreamPlan(seconds=background_hours * 3600 / bg_devices, keywords=0), bg_devices
        ),
        # Last, so the four above keep their seeds (and audio): digits by three more held-out
        # speakers over the same quiet room — the clean F1 on more than the asterisk speaker.
        Condition("more", StreamPlan(seconds=per, keywords=slots, source="eval_more"), devices),
    ]


def spec_line(e: EventsSpec) -> str:
    """Every detector setting on one line."""
    line = (
        f"hop_ms={e.hop_ms} smooth_windows={e.smooth_windows} min_windows={e.min_windows} pool={e.pool} "
        f"margin={e.margin:g} peak={str(e.peak).lower()} min_top={e.min_top} threshold={e.threshold:g} "
        f"refractory_ms={e.refractory_ms}"
    )
    if e.thresholds:
        line += " thresholds={" + ", ".join(f"{k}: {v:g}" for k, v in sorted(e.thresholds.items())) + "}"
    return line
