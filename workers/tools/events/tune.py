"""Tuning the event detector on tuning audio only (`ontime bench events --tune`).

Tuning streams use espeak-ng voices the models never saw, each at three speaking rates and
pitches (keywords over the evaluation's two background levels: a quiet room and 10 dB SNR), and
training noise files (background only, several hours); pipelines/acoustic/streams.py source
"tune". The evaluation recordings are never read here. The served chain scores every window once
at the finest hop (coarser hops are every n-th of those windows); then every point of the grid
(hop, smoothing span, pooling, margin, peak picking, threshold, refractory period) replays the
real `Detector` over those scores. Objective, after the issue's two targets: the highest F1 on all
tuning keyword speech among settings with at most `max_fa_per_hour` false alarms per hour of
background, then the fewest background false alarms, then the cheaper and quicker setting.

Replaying thousands of settings over hours of background stays fast because a window can only
help fire an event if some keyword scores at least the lowest threshold in it (pooled evidence
never exceeds the best keyword probability of the pooled windows): only windows within a
smoothing span of such a "hot" window are replayed, which gives the same events.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.acoustic.streams import (
    SAMPLE_RATE,
    TUNE_PROSODY,
    TUNE_VOICES,
    StreamAudio,
    build_stream,
    windows,
)
from workers.aggregate.detector import WINDOW_MS, Detector, Window, new_state
from workers.config.settings import OntimeSettings
from workers.config.spec import EventsSpec
from workers.tools.events.offline import OfflineChain
from workers.tools.events.scoring import EventScore, Heard, Truth, match

HOPS = (125, 250)  # the tuning audio is scored at the first; the others take every n-th window
SMOOTH = (1, 2, 3, 4)
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
GRID: dict[str, tuple[Any, ...]] = {
    "hop_ms": HOPS,
    "smooth_windows": SMOOTH,
    "pool": ("mean", "max"),
    "margin": (0.0, 0.5, 1.0),
    # Peak picking never changes which utterances are heard (round 2: identical rows), only when;
    # the grid spends its replays on the top-label consistency check instead.
    "peak": (False,),
    "min_top": (0, 2),
    "threshold": THRESHOLDS,
    "refractory_ms": (1500,),  # ≥ 1 s so one long word never fires twice; words come ~4 s apart
}
NOISY_SNR_DB = 10.0  # the `ontime bench events` noisy condition's level, so tuning sees both


@dataclass
class Scored:
    """A stream's windows as the pipeline answers them: (id, captured_ms, top-k scores)."""

    device: str
    windows: list[Window]
    truths: list[Truth]
    background_ms: int  # audio with no keyword in it (for false alarms per hour)
    hop_ms: int = 250

    def plain(self) -> dict[str, Any]:
        """As JSON-ready lists and numbers, for the score caches (`from_plain` reads it back)."""
        return {
            "device": self.device,
            "windows": [[w.id, w.captured_ms, w.scores] for w in self.windows],
            "truths": [[t.device, t.keyword, t.start_ms, t.end_ms, t.source] for t in self.truths],
            "background_ms": self.background_ms,
            "hop_ms": self.hop_ms,
        }

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> Scored:
        return cls(
            d["device"],
            [Window(*w) for w in d["windows"]],
            [Truth(*t) for t in d["truths"]],
            d["background_ms"],
            d["hop_ms"],
        )


def write_cache(path: Path, value: object) -> None:
    """Scores of the served models, cached under `.ontime/` (ignored by git) as gzipped JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent.parent / ".gitignore").write_text("*\n")
    path.write_bytes(gzip.compress(json.dumps(value).encode(), 6))


def score_stream(chain: OfflineChain, device: str, audio: StreamAudio, hop_ms: int, t0_ms: int = 0) -> Scored:
    hop = hop_ms * SAMPLE_RATE // 1000
    tops = chain.top(windows(audio.pcm, hop))
    wins = [
        Window(f"{device}-{k:06d}", t0_ms + (k * hop + SAMPLE_RATE) * 1000 // SAMPLE_RATE, top)
        for k, top in enumerate(tops)
    ]
    truths = [Truth(device, s.word, t0_ms + s.start_ms, t0_ms + s.end_ms, s.source) for s in audio.keywords]
    background = audio.duration_ms if not truths else 0
    return Scored(device, wins, truths, background, hop_ms)


def coarser(s: Scored, hop_ms: int) -> Scored:
    """The same stream as a device with a longer hop (a multiple of the scored one) sends it."""
    if hop_ms == s.hop_ms:
        return s
    if hop_ms % s.hop_ms:
        raise ValueError(f"hop {hop_ms} ms is no multiple of the scored {s.hop_ms} ms")
    return replace(s, windows=s.windows[:: hop_ms // s.hop_ms], hop_ms=hop_ms)


def hot_only(s: Scored, floor: float, span_ms: int) -> Scored:
    """Only the windows within `span_ms` of a window where some keyword scores ≥ `floor`."""
    hot = [w.captured_ms for w in s.windows if _best_keyword(w) >= floor]
    keep, j = [], 0
    for w in s.windows:
        while j < len(hot) and hot[j] < w.captured_ms - span_ms:
            j += 1
        if j < len(hot) and hot[j] <= w.captured_ms + span_ms:
            keep.append(w)
    return replace(s, windows=keep)


def _best_keyword(w: Window) -> float:
    return max((v for k, v in w.scores.items() if not k.startswith("_")), default=0.0)


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


@dataclass
class TuningAudio:
    """Scored tuning streams: keyword speech (clean and noisy) and background only."""

    clean: list[Scored]
    noisy: list[Scored]
    background: list[Scored]


def tuning_streams(
    settings: OntimeSettings,
    minutes_keywords: float,
    minutes_background: float,
    seed: int = 100,
    hop_ms: int = HOPS[0],
    progress: Callable[[str], None] | None = None,
) -> TuningAudio:
    chain = OfflineChain(settings)
    key = _cache_key(chain, float(minutes_keywords), float(minutes_background), seed, hop_ms)
    cached = _load(key)
    if cached is not None:
        if progress:
            progress(f"tuning scores of these models from {CACHE_DIR / key}.json.gz")
        return cached
    clean, noisy, bg = [], [], []
    for i in range(max(1, round(minutes_keywords))):
        # Keywords over a quiet room (the "clean speech" of the F1 target), then the same at 10 dB SNR.
        stream = build_stream("tune", 60, 14, seed=seed + i)
        clean.append(score_stream(chain, f"tune-kw-{i}", stream, hop_ms))
        stream = build_stream("tune", 60, 14, seed=seed + 500 + i, snr_db=NOISY_SNR_DB)
        noisy.append(score_stream(chain, f"tune-noisy-{i}", stream, hop_ms))
    if progress:
        progress(f"scored {2 * len(clean)} min of tuning keyword speech")
    for i in range(max(1, round(minutes_background / 10))):
        stream = build_stream("tune", 600, 0, seed=seed + 1000 + i)  # 10-minute background-only streams
        bg.append(score_stream(chain, f"tune-bg-{i}", stream, hop_ms))
        if progress and i % 6 == 5:
            progress(f"scored {(i + 1) * 10} min of tuning background")
    audio = TuningAudio(clean, noisy, bg)
    _save(key, audio)
    return audio


# Scores of the tuning audio by one set of models (keyed by their sha256): a rerun of --tune for
# the same models skips the minutes of audio synthesis and inference. Local, never committed.
CACHE_DIR = Path(".ontime") / "tune-cache"


def _cache_key(chain: OfflineChain, *args: object) -> str:
    models = [m.card.sha256 for m in (chain.features, chain.classifier, chain.post)]
    what = [models, args, TUNE_VOICES, TUNE_PROSODY, NOISY_SNR_DB, 1]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:24]


def _load(key: str) -> TuningAudio | None:
    path = CACHE_DIR / f"{key}.json.gz"
    if not path.exists():
        return None
    raw = json.loads(gzip.decompress(path.read_bytes()))
    parts = ("clean", "noisy", "background")
    return TuningAudio(*([Scored.from_plain(d) for d in raw[part]] for part in parts))


def _save(key: str, audio: TuningAudio) -> None:
    parts = {"clean": audio.clean, "noisy": audio.noisy, "background": audio.background}
    write_cache(CACHE_DIR / f"{key}.json.gz", {k: [s.plain() for s in v] for k, v in parts.items()})


def grid(base: EventsSpec) -> list[EventsSpec]:
    points = []
    for hop, smooth, pool, margin, peak, min_top, threshold, refractory in itertools.product(*GRID.values()):
        if pool == "max" and smooth == 1:
            continue  # the same as mean over one window
        if min_top > smooth:
            continue  # cannot be met
        points.append(
            base.model_copy(
                update={
                    "hop_ms": hop,
                    "smooth_windows": smooth,
                    "min_windows": min(smooth, 2),
                    "pool": pool,
                    "margin": margin,
                    "peak": peak,
                    "min_top": min_top,
                    "threshold": threshold,
                    "thresholds": {},
                    "refractory_ms": refractory,
                }
            )
        )
    return points


@dataclass
class Tuned:
    """One grid point's scores on the tuning audio."""

    spec: EventsSpec
    speech: EventScore  # clean + noisy keyword speech, with the background false alarms
    clean: EventScore


def tune(
    settings: OntimeSettings,
    minutes_keywords: float = 10,
    minutes_background: float = 180,
    max_fa_per_hour: float = 1.0,
    progress: Callable[[str], None] | None = None,
    per_keyword: bool = True,
) -> TuneOutcome:
    """The chosen settings and every grid point's score on the tuning streams."""
    audio = tuning_streams(settings, minutes_keywords, minutes_background, progress=progress)
    points = grid(settings.pipeline.events)
    by_hop = {hop: prepared(audio, hop) for hop in HOPS}
    table: list[Tuned] = []
    for n, spec in enumerate(points):
        table.append(evaluate_on(spec, *by_hop[spec.hop_ms]))
        if progress and n % 500 == 499:
            progress(f"replayed {n + 1} of {len(points)} settings")
    best = pick(table, max_fa_per_hour)
    common = next(t for t in table if t.spec == best)
    if per_keyword:
        best = calibrate_keywords(best, *by_hop[best.hop_ms], max_fa_per_hour, progress)
    return TuneOutcome(best, table, common, evaluate_on(best, *by_hop[best.hop_ms]))


@dataclass
class TuneOutcome:
    """The chosen setting, every grid point's scores, and the pick before and after the
    per-keyword thresholds."""

    best: EventsSpec
    table: list[Tuned]
    common: Tuned
    final: Tuned


def prepared(audio: TuningAudio, hop_ms: int) -> tuple[list[Scored], list[Scored], list[Scored]]:
    """(clean, noisy, background) at `hop_ms`, hot windows only (same events, far fewer windows)."""
    floor = min(THRESHOLDS)
    span = max(SMOOTH) * max(HOPS) + WINDOW_MS
    clean, noisy, bg = (
        [hot_only(coarser(s, hop_ms), floor, span) for s in streams]
        for streams in (audio.clean, audio.noisy, audio.background)
    )
    return clean, noisy, bg


def write_events_block(path: Path, spec: EventsSpec) -> None:
    """Replace the `events:` block of a pipeline YAML with `spec` (the rest of the file, comments
    included, stays as it is); the file must still load as a pipeline afterwards."""
    import yaml

    lines = path.read_text().splitlines(keepends=True)
    data = spec.model_dump(mode="json")
    order = ("hop_ms", "smooth_windows", "min_windows", "pool", "margin", "peak", "min_top", "threshold")
    events = {k: data.pop(k) for k in order}
    if data.pop("thresholds"):
        events["thresholds"] = dict(sorted(spec.thresholds.items()))
    events.update(data)  # refractory_ms, dedupe_windows, anything added later
    if events.get("dedupe_windows") == EventsSpec.model_fields["dedupe_windows"].default:
        del events["dedupe_windows"]
    # safe_dump quotes what YAML 1.1 would misread (a bare `no:` key is the boolean false).
    block = yaml.safe_dump({"events": events}, sort_keys=False, default_flow_style=False).splitlines(True)
    try:
        at = next(i for i, line in enumerate(lines) if line.rstrip() == "events:")
    except StopIteration:
        text = "".join(lines).rstrip("\n") + "\n" + "".join(block)
    else:
        end = at + 1
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
            end += 1
        text = "".join(lines[:at] + block + lines[end:])
    if EventsSpec.model_validate(yaml.safe_load(text)["events"]) != spec:
        raise ValueError(f"writing the events block of {path} would not give the tuned setting back")
    path.write_text(text)


def evaluate_on(spec: EventsSpec, clean: list[Scored], noisy: list[Scored], bg: list[Scored]) -> Tuned:
    """One setting's scores on the tuning audio: all keyword speech, the clean half, background."""
    heard_clean = detect(spec, clean)
    speech = match([t for s in clean + noisy for t in s.truths], heard_clean + detect(spec, noisy))
    speech.background_false_alarms = len(detect(spec, bg))
    speech.background_hours = sum(s.background_ms for s in bg) / 3_600_000
    return Tuned(spec, speech, match([t for s in clean for t in s.truths], heard_clean))


def calibrate_keywords(
    base: EventsSpec,
    clean: list[Scored],
    noisy: list[Scored],
    bg: list[Scored],
    max_fa_per_hour: float,
    progress: Callable[[str], None] | None = None,
    rounds: int = 2,
) -> EventsSpec:
    """Per-keyword thresholds on top of the chosen setting, by coordinate ascent on tuning audio:
    each keyword in turn gets the threshold that scores best by `pick`'s rule (F1 within the
    false-alarm budget, then fewer false alarms, then the higher threshold), the others held.
    Keywords are not equally easy for the model: one threshold for all is too strict for some and
    too lax for others (the error analysis: most background false alarms are one short word)."""
    keywords = sorted({t.keyword for s in clean + noisy for t in s.truths})
    spec = base
    for r in range(rounds):
        changed = False
        for k in keywords:
            rows = []
            for th in THRESHOLDS:
                thresholds = {**spec.thresholds, k: th}
                rows.append(evaluate_on(spec.model_copy(update={"thresholds": thresholds}), clean, noisy, bg))
            chosen = pick(rows, max_fa_per_hour)
            if chosen.threshold_of(k) != spec.threshold_of(k):
                changed = True
            spec = chosen
        if progress:
            progress(f"per-keyword thresholds, round {r + 1}: {_thresholds_line(spec)}")
        if not changed:
            break
    # Thresholds equal to the common one are not overrides.
    return spec.model_copy(
        update={"thresholds": {k: v for k, v in sorted(spec.thresholds.items()) if v != spec.threshold}}
    )


def _thresholds_line(spec: EventsSpec) -> str:
    return " ".join(f"{k}={v:g}" for k, v in sorted(spec.thresholds.items()) if v != spec.threshold) or "none"


def pick(table: list[Tuned], max_fa_per_hour: float) -> EventsSpec:
    """Highest F1 on tuning speech within the false-alarm budget; ties go to the cheaper setting."""
    ok = [t for t in table if (t.speech.false_alarms_per_hour or 0.0) <= max_fa_per_hour] or table
    best = max(
        ok,
        key=lambda t: (
            round(t.speech.f1, 3),
            -t.speech.background_false_alarms,
            t.spec.hop_ms,  # fewer frames to infer
            not t.spec.peak,  # one hop less latency
            -t.spec.margin,
            t.spec.pool == "mean",
            -t.spec.smooth_windows,
            -t.spec.min_top,
            -t.spec.threshold,
            t.spec.refractory_ms,
            sum(t.spec.thresholds.values()),  # per keyword: the stricter
        ),
    )
    return best.spec
