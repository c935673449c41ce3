"""`Stage.process` under a fake clock, with the real served models: shedding before compute,
degraded answers from the fallback, the late policy, the missed check and the cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from workers.config.settings import load_settings
from workers.config.spec import PipelineSpec
from workers.deadlines.costs import Line
from workers.messages import headers as h
from workers.messages.deadline import Deadline
from workers.messages.envelope import Envelope, Source
from workers.stages.stage import Stage, build_stage

NOW = 1_700_000_000_000.0
PCM = "audio/pcm;format=s16le;rate=16000;channels=1"


class FakeClock:
    """Epoch ms that tests move by hand; `step` is added after every reading."""

    def __init__(self, now: float = NOW, step: float = 0.0) -> None:
        self.now, self.step = now, step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now


def pipeline(**preprocess: Any) -> PipelineSpec:
    data = load_settings("acoustic").pipeline.model_dump()
    data["stages"]["preprocess"].update(preprocess)
    return PipelineSpec.model_validate(data)


def stage(spec: PipelineSpec, clock: FakeClock, primary_ms: float = 1.0, fallback_ms: float = 1.0) -> Stage:
    """The preprocess stage with planning costs pinned (too few runs to replace the priors)."""
    s = build_stage(spec, "preprocess", clock=clock, warm=False)
    s.costs["primary"].set_prior(Line(primary_ms, 0.0))
    s.costs["fallback"].set_prior(Line(fallback_ms, 0.0))
    s.costs["overhead"].set_prior(Line(0.0, 0.0))
    return s


def frame(remaining_ms: float, n: int = 0) -> Envelope:
    from pipelines.acoustic.recordings import keyword_clips

    clip = keyword_clips()[n]
    return Envelope(
        id=f"frame-{n}",
        key=b"mic-0001",
        payload=np.ascontiguousarray(clip.pcm, dtype="<i2").tobytes(),
        content_type=PCM,
        deadline=Deadline(NOW + remaining_ms),
        captured_ms=None,
        taken_ms=NOW,
        source=Source("acoustic.raw", 0, n, int(NOW)),
    )


def test_expired_and_hopeless_frames_are_shed_without_running_the_model() -> None:
    clock = FakeClock()
    s = stage(pipeline(), clock, primary_ms=5.0)
    reserve = s.budget.reserve_ms
    outcomes = s.process([frame(-10, 0), frame(reserve + 4, 1), frame(reserve + 50, 2)])
    assert [(o.kind, o.reason) for o in outcomes] == [
        ("late", "expired"),
        ("late", "insufficient-budget"),
        ("emit", ""),
    ]
    assert outcomes[0].detail.startswith("overrun_ms=10.0;")
    assert outcomes[1].detail.startswith("overrun_ms=1.0;")
    assert s.model_rows_run == 1
    assert s.shed == {"expired": 1, "insufficient-budget": 1}


def test_the_fallback_answers_degraded_when_the_primary_would_miss() -> None:
    clock = FakeClock()
    spec = pipeline(fallback=pipeline().stages["preprocess"].model)
    s = stage(spec, clock, primary_ms=40.0, fallback_ms=2.0)
    reserve = s.budget.reserve_ms
    outcomes = s.process([frame(reserve + 10, 0), frame(reserve + 500, 1)])
    assert [o.kind for o in outcomes] == ["emit", "emit"]
    # Both leave together, so the batch must fit the most urgent member: all on the fallback.
    assert [o.envelope.status for o in outcomes] == ["degraded", "degraded"]
    assert (h.STATUS, b"degraded") in outcomes[0].envelope.headers()
    assert s.rows_by_variant == {"fallback": 2}
    # With time for the primary, the same stage answers ok.
    outcomes = s.process([frame(reserve + 500, 2)])
    assert outcomes[0].envelope.status == "ok"
    assert s.rows_by_variant == {"fallback": 2, "primary": 1}


def test_deliver_policy_runs_late_frames_and_marks_them_late() -> None:
    clock = FakeClock()
    spec = pipeline().model_copy(update={"late_policy": "deliver"})
    s = stage(spec, clock)
    outcomes = s.process([frame(-20, 0)])
    assert outcomes[0].kind == "emit"
    assert outcomes[0].envelope.status == "late"
    assert s.model_rows_run == 1 and not s.shed


def test_a_frame_that_finishes_past_its_deadline_is_routed_late_as_missed() -> None:
    # The clock jumps 500 ms between the admission check and the end of the run.
    clock = FakeClock(step=500.0)
    s = stage(pipeline(), clock)
    outcomes = s.process([frame(s.budget.reserve_ms + 100, 0)])
    assert (outcomes[0].kind, outcomes[0].reason) == ("late", "missed")
    assert outcomes[0].detail.startswith("overrun_ms=")
    assert outcomes[0].envelope.content_type == PCM  # the original payload goes to P.late
    assert s.model_rows_run == 1


def test_cache_answers_repeated_inputs_without_compute() -> None:
    clock = FakeClock()
    s = stage(pipeline(cache={"enabled": True, "max_entries": 8}), clock)
    first = s.process([frame(1000, 0), frame(1000, 1)])
    again = s.process([frame(1000, 0), frame(1000, 3)])
    assert s.cache is not None and s.cache.hits == 1 and s.cache.misses == 3
    assert s.model_rows_run == 3
    assert again[0].envelope.payload == first[0].envelope.payload


def test_cache_is_off_by_default() -> None:
    s = stage(pipeline(), FakeClock())
    assert s.cache is None


def test_a_measured_fast_downstream_admits_a_frame_the_static_reserve_would_shed() -> None:
    from workers.deadlines.reserve import LatencyBoard, LatencyReport

    clock = FakeClock()
    s = stage(pipeline(), clock, primary_ms=2.0)
    static = s.reserve.reserve_ms()
    assert static == pytest.approx(250 * (0.20 + 0.10) + 3 * 250 * 0.35 / 4)  # 140.6 ms
    remaining = 60.0  # far below 2 ms + 140.6 ms, far above 2 ms + measured downstream
    assert [o.kind for o in s.process([frame(remaining)])] == ["late"]

    board = LatencyBoard(clock=clock)
    s.use_board(board)
    for downstream, p99 in (("infer", 12.0), ("postprocess", 8.0)):
        board.put(LatencyReport(downstream, "replica-a", p99, p99 / 2, 500, clock.now))
    assert s.reserve.reserve_ms() < remaining - 2.0
    assert [o.kind for o in s.process([frame(remaining, n=1)])] == ["emit"]


def test_without_fresh_reports_the_static_shares_answer_again() -> None:
    from workers.deadlines.reserve import STALE_MS, LatencyBoard, LatencyReport

    clock = FakeClock()
    s = stage(pipeline(), clock)
    board = LatencyBoard(clock=clock)
    s.use_board(board)
    board.put(LatencyReport("infer", "a", 10.0, 5.0, 500, clock.now))
    only_infer = s.reserve.reserve_ms()
    assert only_infer < s.reserve.static_ms  # infer measured, postprocess still its prior
    board.put(LatencyReport("postprocess", "a", 10.0, 5.0, 500, clock.now))
    assert s.reserve.reserve_ms() < only_infer
    clock.now += STALE_MS + 1
    assert s.reserve.reserve_ms() == pytest.approx(s.reserve.static_ms)


def test_the_hopeless_floor_prices_a_frame_at_an_idle_machines_cost_not_an_overloads() -> None:
    """Right after an overload the recent runs are slow; skip-ahead must still see fresh frames as
    having time (the measured burst that was read ~0.5 s late), while admission plans with them."""
    clock = FakeClock()
    s = stage(pipeline(), clock, primary_ms=1.0)
    idle_floor = s.hopeless_floor_ms()
    for _ in range(40):  # runs slowed by an overload's CPU pressure
        s.costs["primary"].observe(1, 250.0)
    assert s.planning_costs().primary(1) >= 250.0  # admission still prices what it measured
    assert s.hopeless_floor_ms() == pytest.approx(idle_floor)
    assert idle_floor < s.pipeline.budget_ms  # a fresh frame is never hopeless by this floor
