"""The error analysis names the right cause for each kind of miss and false alarm (no model)."""

from pipelines.acoustic.streams import Spoken
from workers.aggregate.detector import Window
from workers.config.spec import EventsSpec
from workers.tools.events.diagnose import EvalStream, diagnose
from workers.tools.events.scoring import Truth
from workers.tools.events.tune import Scored

SPEC = EventsSpec(hop_ms=125, smooth_windows=3, min_windows=2, threshold=0.7, refractory_ms=1500)
BG = {"_background_": 1.0}


def _stream(condition: str, slots: list[tuple[str, list[dict[str, float]]]]) -> EvalStream:
    """One 4 s slot per entry: a word (or "") whose windows' scores are given, background around."""
    wins, truths, spoken, t = [], [], [], 1000
    device = f"{condition}-00"
    for word, scores in slots:
        for k in range(32):
            now = t + 125 * k
            inside = 12 <= k < 12 + len(scores)
            wins.append(Window(f"{device}-{now}", now, scores[k - 12] if inside else BG))
        if word:
            start, end = t + 12 * 125 - 700, t + 12 * 125 - 300  # every window from k=12 holds it
            keyword = not word.startswith("~")
            spoken.append(Spoken(word.lstrip("~"), start, end, "test", keyword))
            if keyword:
                truths.append(Truth(device, word, start, end, "test"))
        t += 32 * 125
    bg_ms = 0 if truths else t
    return EvalStream(Scored(device, wins, truths, bg_ms, 125), condition, spoken, [(0, t, "/x/tabla.flac")])


def test_each_miss_and_false_alarm_gets_its_cause() -> None:
    six = {"six": 0.95, "_background_": 0.05}
    clean = _stream(
        "clean",
        [
            ("six", [six] * 3),  # heard
            ("five", [{"five": 0.6, "_background_": 0.4}] * 3),  # best window 0.6
            ("zero", [{"zero": 0.3, "_background_": 0.7}] * 3),  # best window 0.3
            ("nine", [{"nine": 0.75, "_background_": 0.25}, BG, BG, BG]),  # one window only
            ("pause", [{"five": 0.9, "pause": 0.1}] * 3),  # heard as another keyword
        ],
    )
    words = _stream("words", [("~thirteen", [{"three": 0.9, "_unknown_": 0.1}] * 3)])
    noise = _stream("background", [("", [{"no": 0.9, "_background_": 0.1}] * 3), ("", [])])
    d = diagnose(SPEC, [clean, words, noise])
    assert d.scores["clean"].hits == 1 and d.scores["clean"].utterances == 5
    assert d.misses["clean"] == {
        "no window ≥ threshold, best ≥ 0.5": 1,
        "no window ≥ threshold, best < 0.5": 1,
        "not sustained": 1,
        "wrong keyword (five)": 1,
    }
    assert d.false_alarms["clean"] == {"confusion (pause → five)": 1}
    assert d.false_alarms["words"] == {"non-keyword word (thirteen)": 1}
    assert d.false_alarms["background"] == {"background (no on tabla)": 1}
    assert d.recall_by_recording["clean six test"] == (1, 1)


def test_the_benchmark_conditions_keep_their_order_so_their_audio_keeps_its_seeds() -> None:
    from workers.tools.events.conditions import conditions

    conds = conditions(8.0, 1.0, 10.0)
    assert [c.name for c in conds] == ["clean", "noisy", "words", "background", "more"]
    assert [c.plan.source for c in conds] == ["eval"] * 4 + ["eval_more"]
    assert conds[0].plan.keywords == conds[4].plan.keywords == 29 and conds[3].devices == 6
