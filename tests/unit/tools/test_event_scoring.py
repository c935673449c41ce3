from workers.tools.events.scoring import Heard, Truth, match


def test_match_counts_hits_wrong_keywords_false_alarms_and_latency() -> None:
    truths = [Truth("d", "six", 1000, 1500), Truth("d", "two", 5000, 5400), Truth("e", "one", 1000, 1400)]
    events = [
        Heard("a", "d", "six", 900, 1400, emitted_ms=1700),  # hit, 200 ms after the end
        Heard("b", "d", "six", 1100, 1600),  # the same utterance again: not a second hit
        Heard("c", "d", "one", 5100, 5300),  # right time, wrong keyword
        Heard("x", "e", "one", 9000, 9300),  # nowhere near
    ]
    score = match(truths, events, tolerance_ms=500)
    assert (score.hits, score.wrong_keyword, score.false_alarms, score.events) == (1, 0 + 1, 2, 4)
    assert score.latencies_ms == [200.0]
    assert [t.keyword for t in score.missed] == ["two", "one"]
    assert abs(score.precision - 0.25) < 1e-9 and abs(score.recall - 1 / 3) < 1e-9


def test_tolerance_bounds_how_far_an_event_may_be() -> None:
    truth = [Truth("d", "six", 1000, 1500)]
    assert match(truth, [Heard("a", "d", "six", 1900, 2200)], tolerance_ms=500).hits == 1
    assert match(truth, [Heard("a", "d", "six", 2100, 2400)], tolerance_ms=500).hits == 0
