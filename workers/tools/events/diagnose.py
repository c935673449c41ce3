"""Why each keyword was missed and each false alarm fired: `ontime bench events --why`.

An offline replica of `ontime bench events`: the same four conditions (same plans, seeds and
device names, so the same audio), scored by the served models in process (no broker; the
integration tests check the pipeline's events equal this replay), then the real `Detector`
replayed with a trace of its pooled scores. Every miss and every false alarm gets one cause:

misses (first that applies):
- `wrong keyword`: an event of another keyword overlaps the word (± tolerance);
- `outside tolerance`: an event of the right keyword within 3 s, but not overlapping ± tolerance;
- `refractory`: the pooled score reached the threshold while the device was refractory;
- `not sustained`: some window scores the keyword ≥ threshold, the pooled score never does;
- `no window ≥ threshold`: no window holding the word scores it at its threshold (the model's share),
  split into best window ≥ 0.5 and < 0.5.

false alarms: `confusion` (another keyword's utterance is there), `split` (the same keyword's
utterance is there and already heard), `outside tolerance` (the same keyword within 3 s),
`non-keyword word` (a distractor word is there), `background` (nothing is there; the noise file
is named).

This is a diagnostic on evaluation audio: nothing here chooses a setting (tune.py does, on
tuning audio only).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.acoustic.streams import SAMPLE_RATE, Spoken, build_stream
from workers.aggregate.detector import WINDOW_MS, Detector, new_state
from workers.config.settings import OntimeSettings
from workers.config.spec import EventsSpec
from workers.tools.events.conditions import conditions, spec_line
from workers.tools.events.offline import OfflineChain
from workers.tools.events.scoring import TOLERANCE_MS, EventScore, Heard, Truth, match
from workers.tools.events.tune import Scored, score_stream, write_cache
from workers.tools.stream import device_seed

NEAR_MS = 3000  # an event this close to a word is about that word, even outside the tolerance

CACHE_DIR = Path(".ontime") / "eval-cache"


@dataclass
class EvalStream:
    """A scored evaluation stream and what is in it (words of every kind, noise pieces)."""

    scored: Scored
    condition: str
    spoken: list[Spoken]
    noise: list[tuple[int, int, str]]


def eval_streams(
    settings: OntimeSettings,
    hop_ms: int,
    speech_minutes: float = 8.0,
    background_hours: float = 1.0,
    snr_db: float = 10.0,
    seed: int = 7,
    progress: Callable[[str], None] | None = None,
) -> list[EvalStream]:
    """The benchmark's streams, scored by the served models (cached per model set)."""
    chain = OfflineChain(settings)
    models = [m.card.sha256 for m in (chain.features, chain.classifier, chain.post)]
    key = hashlib.sha256(
        json.dumps([models, hop_ms, speech_minutes, background_hours, snr_db, seed, 2]).encode()
    ).hexdigest()[:24]
    path = CACHE_DIR / f"{key}.json.gz"
    if path.exists():
        return [_from_plain(d) for d in json.loads(gzip.decompress(path.read_bytes()))]
    out: list[EvalStream] = []
    for i, c in enumerate(conditions(speech_minutes, background_hours, snr_db)):
        p = c.plan
        for d, name in enumerate(c.device_names()):
            audio = build_stream(
                p.source,
                p.seconds,
                p.keywords,
                seed=device_seed(seed + i, d),
                snr_db=p.snr_db,
                distractors=p.distractors,
                spacing_s=p.spacing_s,
                lead_s=p.lead_s,
            )
            scored = score_stream(chain, name, audio, hop_ms)
            out.append(EvalStream(scored, c.name, audio.spoken, list(audio.noise)))
        if progress:
            progress(f"scored the {c.name} condition ({c.devices} streams)")
    write_cache(path, [_plain(s) for s in out])
    return out


def _plain(s: EvalStream) -> dict[str, Any]:
    return {
        **s.scored.plain(),
        "condition": s.condition,
        "spoken": [[w.word, w.start_ms, w.end_ms, w.source, w.keyword] for w in s.spoken],
        "noise": s.noise,
    }


def _from_plain(d: dict[str, Any]) -> EvalStream:
    spoken = [Spoken(*w) for w in d["spoken"]]
    return EvalStream(Scored.from_plain(d), d["condition"], spoken, [tuple(n) for n in d["noise"]])


@dataclass
class Trace:
    """One stream's replay: its events and, per window, the pooled evidence and refractoriness."""

    events: list[Heard]
    times: list[int]
    pooled: list[dict[str, float]]
    quiet: list[bool]


def replay(spec: EventsSpec, s: Scored) -> Trace:
    detector, state = Detector(spec), new_state()
    trace = Trace([], [], [], [])
    for w in s.windows:
        was_quiet = state["quiet_until_ms"] is not None and w.captured_ms <= state["quiet_until_ms"]
        d = detector.observe(state, s.device, w)
        if d is not None:
            trace.events.append(Heard(d.id, d.device, d.keyword, d.start_ms, d.end_ms, w.captured_ms))
        recent = detector.recent(state, w.captured_ms)
        pooled = detector.pooled(recent) if len(recent) >= spec.min_windows else {}
        trace.times.append(w.captured_ms)
        trace.pooled.append({k: ev for k, (ev, _) in pooled.items()})
        trace.quiet.append(was_quiet)
    return trace


@dataclass
class Diagnosis:
    """Scores per condition and a cause for every miss and false alarm."""

    scores: dict[str, EventScore] = field(default_factory=dict)
    misses: dict[str, Counter[str]] = field(default_factory=dict)
    false_alarms: dict[str, Counter[str]] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    recall_by_recording: dict[str, tuple[int, int]] = field(default_factory=dict)
    loose: dict[str, EventScore] = field(default_factory=dict)  # scored with a 1 s tolerance


def _overlaps(a0: int, a1: int, b0: int, b1: int, pad: int) -> bool:
    return a0 <= b1 + pad and a1 >= b0 - pad


def diagnose(spec: EventsSpec, streams: list[EvalStream], tolerance_ms: int = TOLERANCE_MS) -> Diagnosis:
    out = Diagnosis()
    by_cond: dict[str, list[EvalStream]] = {}
    for s in streams:
        by_cond.setdefault(s.condition, []).append(s)
    for cond, group in by_cond.items():
        traces = {s.scored.device: replay(spec, s.scored) for s in group}
        truths = [t for s in group for t in s.scored.truths]
        events = [e for t in traces.values() for e in t.events]
        score = match(truths, events, tolerance_ms)
        if cond == "background":
            score.background_false_alarms = score.false_alarms
            score.background_hours = sum(s.scored.background_ms for s in group) / 3_600_000
        out.scores[cond] = score
        out.loose[cond] = match(truths, events, 1000)
        miss, fa = Counter[str](), Counter[str]()
        heard = {(t.device, t.start_ms) for t in truths} - {(t.device, t.start_ms) for t in score.missed}
        for s in group:
            trace = traces[s.scored.device]
            for t in s.scored.truths:
                rec = out.recall_by_recording.setdefault(f"{cond} {t.keyword} {t.source}", (0, 0))
                got = (t.device, t.start_ms) in heard
                out.recall_by_recording[f"{cond} {t.keyword} {t.source}"] = (rec[0] + got, rec[1] + 1)
                if not got:
                    why = _why_missed(spec, s, trace, t, tolerance_ms)
                    miss[why] += 1
                    out.details.append(f"{cond} miss {t.keyword:<8} {t.source[-40:]:<40} {why}")
            for e in _unmatched(s.scored.truths, trace.events, tolerance_ms):
                why = _why_false(s, e, s.scored.truths, heard, tolerance_ms)
                fa[why] += 1
                out.details.append(f"{cond} false alarm {e.keyword:<8} at {e.start_ms} ms: {why}")
        out.misses[cond], out.false_alarms[cond] = miss, fa
    return out


def _unmatched(truths: list[Truth], events: list[Heard], tolerance_ms: int) -> list[Heard]:
    """The events `match` counts as not hitting (same greedy order as scoring.match)."""
    taken: set[int] = set()
    out = []
    for e in sorted(events, key=lambda e: (e.device, e.start_ms)):
        same = [
            i
            for i, t in enumerate(truths)
            if i not in taken
            and t.keyword == e.keyword
            and _overlaps(e.start_ms, e.end_ms, t.start_ms, t.end_ms, tolerance_ms)
        ]
        if same:
            taken.add(same[0])
        else:
            out.append(e)
    return out


def _why_missed(spec: EventsSpec, s: EvalStream, trace: Trace, t: Truth, tol: int) -> str:
    for e in trace.events:
        if e.keyword != t.keyword and _overlaps(e.start_ms, e.end_ms, t.start_ms, t.end_ms, tol):
            return f"wrong keyword ({e.keyword})"
    for e in trace.events:
        if e.keyword == t.keyword and _overlaps(e.start_ms, e.end_ms, t.start_ms, t.end_ms, NEAR_MS):
            return "outside tolerance"
    holding = [
        w for w in s.scored.windows if w.captured_ms > t.start_ms and w.captured_ms - WINDOW_MS < t.end_ms
    ]
    best = max((w.scores.get(t.keyword, 0.0) for w in holding), default=0.0)
    span = spec.smooth_windows * spec.hop_ms
    pooled_at = [
        (p.get(t.keyword, 0.0), q)
        for c, p, q in zip(trace.times, trace.pooled, trace.quiet, strict=True)
        if t.start_ms < c < t.end_ms + WINDOW_MS + span
    ]
    threshold = spec.threshold_of(t.keyword)
    if any(v >= threshold and q for v, q in pooled_at):
        return "refractory"
    if best >= threshold:
        return "not sustained"
    return "no window ≥ threshold, best ≥ 0.5" if best >= 0.5 else "no window ≥ threshold, best < 0.5"


def _why_false(s: EvalStream, e: Heard, truths: list[Truth], heard: set[tuple[str, int]], tol: int) -> str:
    near = [t for t in truths if _overlaps(e.start_ms, e.end_ms, t.start_ms, t.end_ms, tol)]
    other = [t for t in near if t.keyword != e.keyword]
    if other:
        return f"confusion ({other[0].keyword} → {e.keyword})"
    if [t for t in near if (t.device, t.start_ms) in heard]:
        return "split (word already heard)"
    same = [t for t in truths if t.keyword == e.keyword]
    if [t for t in same if _overlaps(e.start_ms, e.end_ms, t.start_ms, t.end_ms, NEAR_MS)]:
        return "outside tolerance"
    words = [w for w in s.spoken if not w.keyword]
    said = [w for w in words if _overlaps(e.start_ms, e.end_ms, w.start_ms, w.end_ms, tol)]
    if said:
        return f"non-keyword word ({said[0].word})"
    where = [n for n in s.noise if n[0] <= e.end_ms and n[1] >= e.start_ms]
    return f"background ({e.keyword} on {Path(where[0][2]).stem if where else '?'})"


def render(d: Diagnosis, spec: EventsSpec, verbose: bool = False) -> str:
    lines = [f"WHY  offline replica of bench events, detector {spec_line(spec)}"]
    for cond, s in d.scores.items():
        loose = d.loose[cond]
        if s.background_hours:
            lines.append(
                f"  {cond:<10} {s.false_alarms} false alarms in {s.background_hours:.2f} h = "
                f"{s.false_alarms_per_hour or 0.0:.2f}/h"
            )
        elif not s.utterances:
            lines.append(f"  {cond:<10} {s.false_alarms} events, no keyword said")
        else:
            lines.append(
                f"  {cond:<10} utterances {s.utterances} events {s.events} hits {s.hits} P {s.precision:.3f} "
                f"R {s.recall:.3f} F1 {s.f1:.3f} (with a 1 s tolerance: F1 {loose.f1:.3f})"
            )
        if d.misses.get(cond):
            lines.append("    misses: " + ", ".join(f"{k} ×{n}" for k, n in d.misses[cond].most_common()))
        if d.false_alarms.get(cond):
            lines.append(
                "    false alarms: " + ", ".join(f"{k} ×{n}" for k, n in d.false_alarms[cond].most_common())
            )
    lines.append("  recall by recording (quiet room): heard/streamed")
    for name, (got, n) in sorted(d.recall_by_recording.items()):
        if name.startswith(("clean ", "more ")):
            lines.append(f"    {name:<66} {got}/{n}")
    if verbose:
        lines += ["  " + x for x in d.details]
    return "\n".join(lines) + "\n"


__all__ = ["SAMPLE_RATE", "Diagnosis", "EvalStream", "diagnose", "eval_streams", "render", "replay"]
