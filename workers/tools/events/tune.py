"""Tuning the event detector on tuning audio only (`ontime bench events --tune`).

Tuning streams use espeak-ng voices the models never saw (keywords over a quiet background) and
training noise files (background only), pipelines/acoustic/streams.py source "tune"; the
evaluation recordings are never read here. The objective is the issue's two targets: F1 on
clean keyword speech, false alarms per hour of background-only audio. The served chain scores
every window once; then every (smoothing, threshold, refractory) in the grid replays the detector
over those scores. The pick: highest F1 (3 decimals) on the keyword streams among settings with
at most `max_fa_per_hour` false alarms per hour of background, then the fewest background false
alarms, then the lower threshold, then the longer refractory period.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pipelines.acoustic.streams import SAMPLE_RATE, StreamAudio, build_stream, windows
from workers.aggregate.detector import Detector, Window, new_state
from workers.config.settings import OntimeSettings
from workers.config.spec import EventsSpec
from workers.tools.events.offline import OfflineChain
from workers.tools.events.scoring import EventScore, Heard, Truth, match

GRID = {
    "smooth_windows": (1, 2, 3),
    "threshold": (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9),
    "refractory_ms": (750, 1000, 1500),
}


@dataclass
class Scored:
    """A stream's windows as the pipeline answers them: (id, captured_ms, top-k scores)."""

    device: str
    windows: list[Window]
    truths: list[Truth]
    background_ms: int  # audio with no keyword in it (for false alarms per hour)


def score_stream(chain: OfflineChain, device: str, audio: StreamAudio, hop_ms: int, t0_ms: int = 0) -> Scored:
    hop = hop_ms * SAMPLE_RATE // 1000
    tops = chain.top(windows(audio.pcm, hop))
    wins = [
        Window(f"{device}-{k:06d}", t0_ms + (k * hop + SAMPLE_RATE) * 1000 // SAMPLE_RATE, top)
        for k, top in enumerate(tops)
    ]
    truths = [Truth(device, s.word, t0_ms + s.start_ms, t0_ms + s.end_ms, s.source) for s in audio.keywords]
    background = audio.duration_ms if not truths else 0
    return Scored(device, wins, truths, background)


def detect(spec: EventsSpec, streams: list[Scored]) -> list[Heard]:
    """Replay the detector over scored streams (in capture order, as the aggregator sees them)."""
    out: list[Heard] = []
    for s in streams:
        detector, state = Detector(spec), new_state()
        for w in s.windows:
            d = detector.observe(state, s.device, w)
            if d is not None:
                out.append(Heard(d.id, d.device, d.keyword, d.start_ms, d.end_ms, w.captured_ms))
    return out


def evaluate(spec: EventsSpec, keyword_streams: list[Scored], background_streams: list[Scored]) -> EventScore:
    score = match([t for s in keyword_streams for t in s.truths], detect(spec, keyword_streams))
    noise = match([], detect(spec, background_streams))
    score.background_false_alarms = noise.false_alarms
    score.background_hours = sum(s.background_ms for s in background_streams) / 3_600_000
    return score


def tuning_streams(
    settings: OntimeSettings, minutes_keywords: float, minutes_background: float, seed: int = 100
) -> tuple[list[Scored], list[Scored]]:
    chain = OfflineChain(settings)
    hop = settings.pipeline.events.hop_ms
    kw, bg = [], []
    # Keywords over a quiet background: the "clean speech" of the F1 target.
    for i in range(max(1, round(minutes_keywords))):
        audio = build_stream("tune", 60, 14, seed=seed + i)
        kw.append(score_stream(chain, f"tune-kw-{i}", audio, hop))
    # Background only (no speech): false alarms per hour.
    for i in range(max(1, round(minutes_background / 2))):
        audio = build_stream("tune", 120, 0, seed=seed + 1000 + i)
        bg.append(score_stream(chain, f"tune-bg-{i}", audio, hop))
    return kw, bg


def tune(
    settings: OntimeSettings,
    minutes_keywords: float = 10,
    minutes_background: float = 30,
    max_fa_per_hour: float = 1.0,
) -> tuple[EventsSpec, list[tuple[EventsSpec, EventScore]]]:
    """The chosen settings and every grid point's score on the tuning streams."""
    kw, bg = tuning_streams(settings, minutes_keywords, minutes_background)
    base = settings.pipeline.events
    table: list[tuple[EventsSpec, EventScore]] = []
    for smooth, threshold, refractory in itertools.product(*GRID.values()):
        spec = base.model_copy(
            update={
                "smooth_windows": smooth,
                "min_windows": min(smooth, base.min_windows),
                "threshold": threshold,
                "refractory_ms": refractory,
            }
        )
        table.append((spec, evaluate(spec, kw, bg)))
    ok = [(s, e) for s, e in table if (e.false_alarms_per_hour or 0.0) <= max_fa_per_hour] or table
    best = max(
        ok,
        key=lambda se: (
            round(se[1].f1, 3),
            -se[1].background_false_alarms,
            -se[0].threshold,
            se[0].refractory_ms,
        ),
    )
    return best[0], table
