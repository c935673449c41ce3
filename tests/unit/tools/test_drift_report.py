"""`ontime report --drift` reads the drift gauges of a worker's /metrics text."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest

from workers.config.settings import load_settings
from workers.telemetry.drift import DriftMonitor
from workers.tools.drift_report import DriftRow, parse


def test_rows_carry_score_threshold_and_window_from_a_live_registry() -> None:
    registry = CollectorRegistry()
    monitor = DriftMonitor(load_settings("acoustic").pipeline, ["preprocess", "infer"], registry)
    monitor.score.labels("acoustic", "infer", "logmel").set(0.9)
    monitor.frames.labels("acoustic", "infer").set(512)
    rows = {(r.stage, r.group): r for r in parse("w1", generate_latest(registry).decode())}
    assert set(rows) == {
        ("preprocess", "level"), ("preprocess", "silence"),
        ("infer", "logmel"), ("infer", "labels"), ("infer", "confidence"),
    }  # fmt: skip
    logmel = rows[("infer", "logmel")]
    assert logmel.score == 0.9 and logmel.frames == 512 and logmel.state == "OVER"
    assert logmel.threshold == monitor.watch["infer"].window.groups["logmel"].group.threshold
    assert (
        math.isnan(rows[("preprocess", "level")].score) and rows[("preprocess", "level")].state == "filling"
    )


def test_state_reads_ok_under_the_threshold_and_over_above_it() -> None:
    assert DriftRow("w", "infer", "labels", 0.3, 2.2, 512).state == "ok"
    assert DriftRow("w", "infer", "labels", 2.3, 2.2, 512).state == "OVER"
