"""Deadline math: stamping, clamping, and the per-stage budget with its downstream reserve."""

from __future__ import annotations

import pytest

from workers.config.settings import load_settings
from workers.deadlines.budget import StageBudget
from workers.messages.deadline import Deadline, stamp


def test_missing_header_gets_record_timestamp_plus_budget() -> None:
    assert stamp(None, 1_000, 250, 50) == 1_250
    assert stamp("", 1_000, 250, 50) == 1_250


def test_device_deadline_within_budget_is_kept() -> None:
    assert stamp("1200", 1_000, 250, 50) == 1_200
    assert stamp("1300", 1_000, 250, 50) == 1_300  # budget + skew is still allowed


def test_device_deadline_beyond_budget_plus_skew_is_clamped() -> None:
    assert stamp("999999", 1_000, 250, 50) == 1_300


def test_unparseable_header_falls_back_to_budget() -> None:
    assert stamp("soon", 1_000, 250, 50) == 1_250


def test_a_deadline_in_the_past_stays_in_the_past() -> None:
    assert stamp("500", 1_000, 250, 50) == 500


def test_record_timestamp_from_the_future_is_pulled_back_to_now_plus_skew() -> None:
    # A device clock 10 s ahead stamps CreateTime 11 000 while the worker reads 1 000.
    assert stamp(None, 11_000, 250, 50, now=1_000) == 1_000 + 50 + 250
    assert stamp("99999", 11_000, 250, 50, now=1_000) == 1_000 + 50 + 250 + 50
    # A timestamp in the past is not touched by `now`.
    assert stamp(None, 900, 250, 50, now=1_000) == 1_150


def test_deadline_remaining_and_expiry_under_an_explicit_clock() -> None:
    d = Deadline(1_000)
    assert d.remaining_ms(now=900) == 100
    assert not d.expired(now=999.9)
    assert d.expired(now=1_000)
    assert d.remaining_ms(now=1_010) == -10


def test_budget_reserves_the_later_stages_and_the_hops_ahead() -> None:
    pipeline = load_settings("acoustic").pipeline
    shares = {name: spec.budget_share for name, spec in pipeline.stages.items()}
    hop = pipeline.budget_ms * pipeline.transport_share / 4
    post = StageBudget.of(pipeline, "postprocess")
    infer = StageBudget.of(pipeline, "infer")
    pre = StageBudget.of(pipeline, "preprocess")
    assert post.reserve_ms == pytest.approx(hop)
    assert infer.reserve_ms == pytest.approx(pipeline.budget_ms * shares["postprocess"] + 2 * hop)
    assert pre.reserve_ms == pytest.approx(
        pipeline.budget_ms * (shares["infer"] + shares["postprocess"]) + 3 * hop
    )
    assert infer.stage_ms == pytest.approx(pipeline.budget_ms * shares["infer"])
    # Each stage's reserve plus its own share never exceeds what the earlier stage reserved.
    assert infer.reserve_ms + infer.stage_ms + hop == pytest.approx(pre.reserve_ms)


def test_slack_and_latest_start() -> None:
    b = StageBudget(stage="infer", total_ms=250, stage_ms=87.5, reserve_ms=60)
    d = Deadline(1_000)
    assert b.slack_ms(d, now=800, cost_ms=30) == pytest.approx(110)
    assert b.slack_ms(d, now=950, cost_ms=30) == pytest.approx(-40)
    assert b.latest_start_ms(d, cost_ms=30) == pytest.approx(910)
