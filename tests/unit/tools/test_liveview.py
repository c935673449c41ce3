"""The demo's tally and live view, fed with records as the terminal topics carry them."""

from __future__ import annotations

import io
import json

import pytest

from schemas.results import Result
from workers.messages import headers as h
from workers.tools.liveview import LiveView, Tally, outcome_of, results_jsonl

SHA = "0" * 64


class FakeClock:
    """A clock the test moves by hand, so windows are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _result(frame_id: str, label: str = "seven", captured: int = 1000, completed: int = 1040) -> bytes:
    return json.dumps(
        {
            "id": frame_id,
            "pipeline": "acoustic",
            "device": "mic-0001",
            "label": label,
            "score": 0.9,
            "top": [{"label": label, "score": 0.9}],
            "status": "ok",
            "model": {"name": "classifier", "version": "1", "sha256": SHA},
            "captured_ms": captured,
            "deadline_ms": captured + 250,
            "completed_ms": completed,
            "stages": [
                {"stage": "preprocess", "queue_ms": 2.0, "compute_ms": 3.0},
                {"stage": "infer", "queue_ms": 4.0, "compute_ms": 5.0},
                {"stage": "postprocess", "queue_ms": 1.0, "compute_ms": 0.5},
            ],
        }
    ).encode()


def test_result_record_gives_end_to_end_and_stage_times() -> None:
    o = outcome_of("result", _result("a", captured=1000, completed=1040), [(h.ID, b"a")])
    assert o.kind == "result" and o.id == "a"
    assert o.e2e_ms == 40.0
    assert [(t.stage, t.queue_ms, t.compute_ms) for t in o.stages][1] == ("infer", 4.0, 5.0)


def test_late_and_dlq_records_keep_reason_and_stage() -> None:
    headers = [
        (h.ID, b"b"),
        (h.ERROR_STAGE, b"infer"),
        (h.ERROR_REASON, b"deadline"),
        (h.STAGE_MS, b"preprocess=1.00/2.00"),
    ]
    o = outcome_of("late", b"pcm", headers)
    assert (o.id, o.kind, o.stage, o.reason) == ("b", "late", "infer", "deadline")
    assert o.stages[0].stage == "preprocess"


def test_unreadable_result_counts_as_dlq_not_lost() -> None:
    o = outcome_of("result", b"{not json", [(h.ID, b"c")])
    assert (o.id, o.kind, o.reason) == ("c", "dlq", "invalid-result")


def test_tally_counts_each_frame_once_and_summarises() -> None:
    clock = FakeClock()
    tally = Tally(window_s=10.0, clock=clock)
    assert tally.add(outcome_of("result", _result("a", completed=1040), None))
    assert not tally.add(outcome_of("result", _result("a", completed=1099), None))  # redelivered
    assert tally.add(outcome_of("result", _result("b", completed=1060), None))
    assert tally.add(outcome_of("dlq", b"", [(h.ID, b"c"), (h.ERROR_REASON, b"bad-shape")]))
    assert tally.duplicates == 1
    assert tally.ended({"a", "b", "c", "d"}) == 3
    clock.now += 2.0
    snap = tally.snapshot(sent=5)
    assert (snap.results, snap.late, snap.dlq, snap.in_flight) == (2, 0, 1, 2)
    assert snap.results_per_s == pytest.approx(1.0)
    assert snap.e2e.p50 == pytest.approx(50.0)
    assert snap.stages["infer"].p50 == pytest.approx(9.0)  # queue + compute
    e2e, stages = tally.run_summary()
    assert e2e.count == 2 and e2e.max == 60.0
    assert stages["preprocess"][1].p50 == 3.0
    clock.now += 60.0  # everything has left the live window, nothing has left the run summary
    assert tally.snapshot(sent=5).e2e.count == 0
    assert tally.run_summary()[0].count == 2


def test_live_view_redraws_in_place_on_a_terminal() -> None:
    tally = Tally(clock=FakeClock())
    tally.add(outcome_of("result", _result("a"), None))
    out = io.StringIO()
    view = LiveView(out, budget_ms=250, tty=True)
    view.show(tally.snapshot(sent=1), "sending")
    first = out.getvalue()
    view.show(tally.snapshot(sent=2), "sending")
    second = out.getvalue()[len(first) :]
    lines = len(first.splitlines())
    assert second.startswith(f"\x1b[{lines}F")  # cursor back to the top of the block
    assert "results" in first and "budget 250" in first


def test_live_view_prints_a_line_every_few_seconds_without_a_terminal() -> None:
    clock = FakeClock()
    tally = Tally(clock=clock)
    out = io.StringIO()
    view = LiveView(out, budget_ms=250, tty=False, line_every_s=5.0)
    for _ in range(10):
        view.show(tally.snapshot(sent=0))
        clock.now += 1.0
    assert "\x1b" not in out.getvalue()
    assert len(out.getvalue().splitlines()) == 2  # at 0 s and 5 s


def test_results_jsonl_round_trips() -> None:
    result = Result.model_validate_json(_result("a"))
    line = results_jsonl([result]).strip()
    assert Result.model_validate_json(line) == result
