"""The tuner's shortcuts give the same events as replaying every window (no model needed here)."""

import json

import numpy as np

from workers.aggregate.detector import Window
from workers.config.spec import EventsSpec
from workers.tools.events.scoring import EventScore, Truth
from workers.tools.events.tune import Scored, Tuned, coarser, detect, grid, hot_only, pick


def _stream(seed: int, n: int = 800, hop: int = 125) -> Scored:
    rng = np.random.default_rng(seed)
    labels = ["six", "zero", "no", "_unknown_", "_background_"]
    wins = []
    for k in range(n):
        burst = k % 40 < int(rng.integers(0, 7))  # a word now and then, background in between
        alpha = [3.0, 0.5, 0.5, 0.5, 0.3] if burst else [0.05, 0.05, 0.05, 0.2, 5.0]
        p = rng.dirichlet(alpha)
        top = sorted(zip(labels, p, strict=True), key=lambda lp: -lp[1])[:3]
        wins.append(Window(f"d-{k:06d}", 1000 + k * hop, {label: float(v) for label, v in top}))
    return Scored("d", wins, [Truth("d", "six", 5000, 5600)], 0, hop)


def test_hot_windows_only_give_the_same_events_for_every_kind_of_setting() -> None:
    streams = [_stream(1), _stream(2)]
    base = EventsSpec()
    specs = [s for s in grid(base) if s.hop_ms == 125][::11]
    assert len(specs) > 20
    fast = [hot_only(s, 0.3, 4 * 250 + 1000) for s in streams]
    assert sum(len(s.windows) for s in fast) < sum(len(s.windows) for s in streams)
    fired = 0
    for spec in specs:
        every, hot = detect(spec, streams), detect(spec, fast)
        assert every == hot, spec
        fired += len(every)
    assert fired > 0


def test_a_coarser_hop_is_every_nth_window() -> None:
    s = _stream(3, n=10)
    half = coarser(s, 250)
    assert [w.id for w in half.windows] == [w.id for w in s.windows[::2]] and half.hop_ms == 250


def test_pick_keeps_the_false_alarm_budget_then_prefers_the_cheaper_setting() -> None:
    def tuned(spec: EventsSpec, hits: int, fa: int) -> Tuned:
        score = EventScore(
            utterances=10, events=hits, hits=hits, background_false_alarms=fa, background_hours=2
        )
        return Tuned(spec, score, score)

    a = EventsSpec(hop_ms=125, threshold=0.5)
    b = EventsSpec(hop_ms=250, threshold=0.6)
    c = EventsSpec(hop_ms=250, threshold=0.4)
    assert pick([tuned(a, 9, 0), tuned(b, 9, 0), tuned(c, 10, 4)], 1.0) == b


def test_write_events_block_replaces_only_the_events_block(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from workers.config.settings import load_settings
    from workers.tools.events.tune import write_events_block

    src = Path("pipelines/acoustic/pipeline.yaml").read_text()
    path = tmp_path / "acoustic.yaml"
    path.write_text(src)
    spec = EventsSpec(hop_ms=250, smooth_windows=2, threshold=0.65, min_top=1, thresholds={"no": 0.9})
    write_events_block(path, spec)
    assert load_settings(str(path)).pipeline.events == spec
    before, after = src.split("\nevents:\n")[0], path.read_text().split("\nevents:\n")[0]
    assert before == after  # everything above the block, comments included, untouched
    write_events_block(path, spec)  # idempotent
    assert load_settings(str(path)).pipeline.events == spec


def test_per_keyword_calibration_lowers_a_hard_keyword_within_the_false_alarm_budget() -> None:
    from workers.tools.events.tune import calibrate_keywords

    def stream(device: str, word_scores: list[tuple[str, float]], hop: int = 125) -> Scored:
        wins, truths, t = [], [], 1000
        for word, p in word_scores:
            for k in range(32):  # 4 s slots: the word's windows in the middle, background around
                now = t + k * hop
                scores = {word: p, "_background_": 1 - p} if 12 <= k < 16 and word else {"_background_": 1.0}
                wins.append(Window(f"{device}-{now}", now, scores))
            if word:
                truths.append(Truth(device, word, t + 12 * hop - 600, t + 15 * hop - 400))
            t += 32 * hop
        return Scored(device, wins, truths, 0 if truths else t, hop)

    speech = stream("kw", [("six", 0.95), ("no", 0.55)] * 5)
    noise = stream("bg", [("", 0.0)] * 50)
    noise.background_ms = 3_600_000
    base = EventsSpec(hop_ms=125, smooth_windows=3, min_windows=2, threshold=0.7)
    tuned = calibrate_keywords(base, [speech], [], [noise], 1.0)
    assert 0.3 <= tuned.threshold_of("no") <= 0.55 and tuned.threshold_of("six") >= 0.7


def test_scored_streams_survive_the_score_cache_round_trip() -> None:
    windows = [Window("w1", 1000, {"no": 0.8, "_unknown_": 0.1})]
    s = Scored("mic-1", windows, [Truth("mic-1", "no", 900, 1400, "x")], 60_000, 125)
    assert Scored.from_plain(json.loads(json.dumps(s.plain()))) == s
