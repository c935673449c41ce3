import json

from workers.aggregate.app import parse_result, to_event
from workers.aggregate.detector import Detector, Window, new_state
from workers.config.spec import EventsSpec

SPEC = EventsSpec(smooth_windows=2, min_windows=2, threshold=0.7, refractory_ms=1500, hop_ms=250)


def _windows(scores: list[dict[str, float]], t0: int = 10_000) -> list[Window]:
    return [Window(f"w{k}", t0 + 250 * k, s) for k, s in enumerate(scores)]


BG = {"_background_": 0.99}
SIX = {"six": 0.95, "_background_": 0.04}


def _run(windows: list[Window], state: dict | None = None, spec: EventsSpec = SPEC) -> list:
    detector, state = Detector(spec), state if state is not None else new_state()
    return [d for w in windows if (d := detector.observe(state, "mic-1", w)) is not None]


def test_one_utterance_fires_once_with_its_frames_and_a_deterministic_id() -> None:
    fired = _run(_windows([BG, BG, SIX, SIX, SIX, BG, BG]))
    assert [d.keyword for d in fired] == ["six"]
    d = fired[0]
    assert d.frames == ["w2", "w3"] and d.id == f"mic-1@{d.start_ms}"
    assert d.start_ms < d.end_ms <= 10_000 + 250 * 3
    assert _run(_windows([BG, BG, SIX, SIX, SIX, BG, BG]))[0] == d  # same windows, same event


def test_one_window_alone_is_not_enough_and_background_never_fires() -> None:
    assert _run(_windows([BG, SIX, BG, BG, {"_unknown_": 0.99}, BG])) == []


def test_refractory_period_then_a_second_utterance() -> None:
    near = _windows([SIX, SIX, SIX, BG, SIX, SIX, BG])  # second burst 1 s later: same utterance
    assert len(_run(near)) == 1
    far = _windows([SIX, SIX, BG, BG, BG, BG, BG, BG, BG, SIX, SIX])  # 2.25 s later: a new one
    assert len(_run(far)) == 2


def test_duplicate_results_are_dropped_by_id_and_state_is_json() -> None:
    state = new_state()
    detector = Detector(SPEC)
    ws = _windows([BG, SIX, SIX, BG])
    first = [detector.observe(state, "mic-1", w) for w in ws]
    again = [detector.observe(state, "mic-1", w) for w in ws]  # at-least-once redelivery
    assert sum(d is not None for d in first) == 1 and again == [None] * 4
    assert detector.duplicates == 4
    restored = json.loads(json.dumps(state))  # what the changelog holds and gives back
    assert _run([Window("w9", ws[-1].captured_ms + 250, SIX)], restored) == []  # still refractory


def test_out_of_order_results_are_placed_by_capture_time_and_stale_ones_ignored() -> None:
    ws = _windows([BG, BG, SIX, SIX, BG])
    shuffled = [ws[0], ws[1], ws[3], ws[2], ws[4]]
    assert [d.keyword for d in _run(shuffled)] == ["six"]
    detector, state = Detector(SPEC), new_state()
    for w in _windows([BG] * 12):
        detector.observe(state, "mic-1", w)
    assert detector.observe(state, "mic-1", Window("old", 10_000, SIX)) is None
    assert detector.stale == 1


def test_parse_result_rejects_what_is_not_a_result() -> None:
    window, _, why = parse_result(b"not json")
    assert window is None and why.startswith("invalid-result")
    good = {
        "id": "f1",
        "pipeline": "acoustic",
        "device": "mic-1",
        "label": "six",
        "score": 0.9,
        "top": [{"label": "six", "score": 0.9}, {"label": "_background_", "score": 0.1}],
        "status": "ok",
        "model": {"name": "m", "version": "1", "sha256": "a" * 64},
        "captured_ms": 5000,
        "deadline_ms": 5250,
        "completed_ms": 5100,
        "stages": [],
    }
    window, device, _ = parse_result(json.dumps(good).encode())
    assert window == Window("f1", 5000, {"six": 0.9, "_background_": 0.1}) and device == "mic-1"
    window, _, why = parse_result(json.dumps({**good, "captured_ms": None}).encode())
    assert window is None and "captured_ms" in why


def test_event_latency_is_from_the_end_of_the_keyword() -> None:
    d = _run(_windows([BG, SIX, SIX, BG]))[0]
    event = to_event("acoustic", d)
    assert event.latency_ms == event.emitted_ms - event.end_ms and event.frames == d.frames


def test_margin_counts_unknown_and_background_mass_against_a_keyword() -> None:
    doubtful = {"six": 0.75, "_unknown_": 0.24}
    assert [d.keyword for d in _run(_windows([BG, doubtful, doubtful, BG]))] == ["six"]
    strict = SPEC.model_copy(update={"margin": 1.0})
    assert _run(_windows([BG, doubtful, doubtful, BG]), spec=strict) == []  # 0.75 - 0.24 < 0.7
    sure = {"six": 0.9, "_unknown_": 0.05}
    assert [d.keyword for d in _run(_windows([BG, sure, sure, BG]), spec=strict)] == ["six"]


def test_max_pooling_hears_a_long_word_that_only_one_window_holds_whole() -> None:
    partial = {"zero": 0.3, "_background_": 0.65}
    whole = {"zero": 0.92, "_background_": 0.05}
    ws = _windows([BG, partial, whole, partial, BG, BG])
    assert _run(ws) == []  # the two-window mean never reaches 0.7
    fired = _run(ws, spec=SPEC.model_copy(update={"pool": "max"}))
    assert [(d.keyword, d.frames, d.score) for d in fired] == [("zero", ["w2"], 0.92)]


def test_peak_picking_fires_one_window_later_on_the_peak_windows() -> None:
    rising = [BG, {"six": 0.72}, {"six": 0.8}, {"six": 0.99}, {"six": 0.5}, BG, BG]
    at_crossing = _run(_windows(rising))
    at_peak = _run(_windows(rising), spec=SPEC.model_copy(update={"peak": True}))
    assert len(at_crossing) == len(at_peak) == 1
    assert at_crossing[0].frames == ["w1", "w2"] and at_peak[0].frames == ["w2", "w3"]
    assert at_peak[0].score > at_crossing[0].score
    # The pending peak is part of the JSON state: a restart between crossing and peak fires the same event.
    spec = SPEC.model_copy(update={"peak": True})
    detector, state = Detector(spec), new_state()
    ws = _windows(rising)
    for w in ws[:3]:
        assert detector.observe(state, "mic-1", w) is None
    restored = json.loads(json.dumps(state))
    assert _run(ws[3:], restored, spec) == at_peak


NO_WEAK = {"no": 0.6, "_background_": 0.4}
SIX_WEAK = {"six": 0.6, "_background_": 0.4}


def test_per_keyword_thresholds_override_the_common_one() -> None:
    spec = SPEC.model_copy(update={"thresholds": {"no": 0.5, "six": 0.9}})
    assert spec.threshold_of("no") == 0.5 and spec.threshold_of("two") == 0.7
    assert [d.keyword for d in _run(_windows([BG, NO_WEAK, NO_WEAK, BG]), spec=spec)] == ["no"]
    assert _run(_windows([BG, NO_WEAK, NO_WEAK, BG])) == []  # 0.6 < the common 0.7
    assert _run(_windows([BG, SIX, {"six": 0.8}, BG]), spec=spec) == []  # mean 0.875 < six's 0.9
    assert [d.keyword for d in _run(_windows([BG, SIX, {"six": 0.8}, BG]))] == ["six"]


def test_the_keyword_furthest_above_its_own_threshold_fires() -> None:
    # "six" scores more, but "no" is further above its (lower) threshold.
    both = {"six": 0.72, "no": 0.27, "_background_": 0.01}
    spec = SPEC.model_copy(update={"thresholds": {"no": 0.2}})
    assert [d.keyword for d in _run(_windows([BG, both, both, BG]), spec=spec)] == ["no"]
    assert [d.keyword for d in _run(_windows([BG, both, both, BG]))] == ["six"]


def test_top_label_consistency_rejects_a_keyword_that_is_not_the_top_label() -> None:
    # "six" pools above threshold, but `_unknown_` is the top label of one of the two windows.
    mixed = [BG, SIX, {"six": 0.48, "_unknown_": 0.52}, BG]
    spec = SPEC.model_copy(update={"min_top": 2, "threshold": 0.7})
    assert [d.keyword for d in _run(_windows(mixed))] == ["six"]
    assert _run(_windows(mixed), spec=spec) == []
    assert [d.keyword for d in _run(_windows([BG, SIX, SIX, BG]), spec=spec)] == ["six"]


def test_per_keyword_thresholds_must_be_keywords_in_range() -> None:
    import pytest
    from pydantic import ValidationError

    for bad in ({"_unknown_": 0.5}, {"no": 0.0}, {"no": 1.5}):
        with pytest.raises(ValidationError):
            EventsSpec(thresholds=bad)
