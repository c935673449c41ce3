"""The tuner's shortcuts give the same events as replaying every window (no model needed here)."""

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
