"""The measured downstream reserve: windows, reports on the wire, the board, the reserve."""

from __future__ import annotations

import pytest

from workers.config.settings import load_settings
from workers.deadlines.reserve import (
    MIN_FRAMES,
    DownstreamReserve,
    LatencyBoard,
    LatencyReport,
    LatencyWindow,
)


def test_a_window_reports_a_high_percentile_of_recent_frames_only() -> None:
    window = LatencyWindow(window_ms=1_000)
    for i in range(MIN_FRAMES - 1):
        window.observe(10_000 + i, 5.0)
    assert window.report("infer", "a", 10_100) is None  # too few frames to plan with
    for i in range(200):
        window.observe(10_100 + i, 5.0 if i % 50 else 40.0)
    report = window.report("infer", "a", 10_400)
    assert report is not None and report.p50_ms == 5.0 and 5.0 < report.quantile_ms <= 40.0
    assert window.report("infer", "a", 20_000) is None  # everything fell out of the window


def test_reports_round_trip_and_garbage_is_refused() -> None:
    report = LatencyReport("postprocess", "pod-1", 7.5, 2.0, 321, 1_700_000_000_000.0)
    assert LatencyReport.decode(report.encode()) == report
    assert report.key() == b"latency/postprocess/pod-1"
    for bad in (
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"stage": "x"}',
        b'{"stage":"x","replica":"r","quantile_ms":"nan","p50_ms":1,"frames":1,"at_ms":1}',
    ):
        with pytest.raises(ValueError):
            LatencyReport.decode(bad)


def test_the_board_takes_the_slowest_fresh_replica() -> None:
    now = [1_000_000.0]
    board = LatencyBoard(stale_ms=5_000, clock=lambda: now[0])
    board.put(LatencyReport("infer", "a", 8.0, 4.0, 100, now[0]))
    board.put(LatencyReport("infer", "b", 20.0, 4.0, 100, now[0] - 4_000))
    assert board.measured_ms("infer") == 20.0
    now[0] += 2_000  # b's report is now stale
    assert board.measured_ms("infer") == 8.0
    board.put(LatencyReport("infer", "a", 9.0, 4.0, 100, now[0] - 10_000))  # older than what it has
    assert board.measured_ms("infer") == 8.0
    assert board.measured_ms("postprocess") is None


def test_the_reserve_is_measured_where_known_and_never_above_the_static_one() -> None:
    pipeline = load_settings("acoustic").pipeline
    board = LatencyBoard(clock=lambda: 0.0)
    reserve = DownstreamReserve(pipeline, "preprocess", board)
    assert reserve.reserve_ms() == pytest.approx(reserve.static_ms)
    assert not reserve.measured()
    board.put(LatencyReport("infer", "a", 10.0, 5.0, 100, 0.0))
    board.put(LatencyReport("postprocess", "a", 5.0, 2.0, 100, 0.0))
    assert reserve.measured()
    assert 15.0 < reserve.reserve_ms() < 30.0
    board.put(LatencyReport("infer", "a", 10_000.0, 5.0, 100, 1.0))  # a downstream in trouble
    assert reserve.reserve_ms() == pytest.approx(reserve.static_ms)
    assert DownstreamReserve(pipeline, "postprocess", board).reserve_ms() == pytest.approx(
        reserve.static_ms
        - pipeline.stage_budget_ms("infer")
        - pipeline.stage_budget_ms("postprocess")
        - 2 * pipeline.budget_ms * pipeline.transport_share / 4
    )
