"""Rollout records on the control topic, and the plan each operator command makes from the last."""

from __future__ import annotations

import pytest

from workers.config.settings import load_settings
from workers.errors import ConfigError
from workers.loop.plans import Ack, Plan, ack_key, plan_key
from workers.tools.rollout import ControlState, current_plan, next_plan, revert_of

V1, V2 = "acoustic/student-int8@1.1.0", "acoustic/student-int8@2.0.0"


def test_plans_and_acks_survive_the_wire_and_garbage_does_not_parse() -> None:
    plan = Plan("infer", V2, "r1", 5, previous=V1, candidate=None, by="rollout")
    assert Plan.decode(plan.encode()) == plan
    ack = Ack("infer", "pod-1", "r1", False, "n:1.0.0:abc", 6, refused="checksum", reason="sha256 differs")
    assert Ack.decode(ack.encode()) == ack
    for garbage in (
        b"{}",
        b"[]",
        b'{"stage": "infer"}',
        b'{"stage":"i","serving":"x","rollout":"r","at_ms":1,"share":7}',
    ):
        with pytest.raises(ValueError):
            Plan.decode(garbage)
    assert (plan_key("infer"), ack_key("infer", "pod-1")) == (b"model/infer", b"ack/infer/pod-1")


def test_without_a_plan_the_pipeline_yaml_is_the_current_one() -> None:
    settings = load_settings("acoustic")
    state = ControlState()
    assert current_plan(settings, state, "infer").serving == V1
    state.take(plan_key("infer"), Plan("infer", V2, "r1", 5, previous=V1).encode())
    state.take(b"latency/infer/pod-1", b"not json")  # skipped, as workers skip it
    assert current_plan(settings, state, "infer").serving == V2
    with pytest.raises(ConfigError, match="no stage"):
        current_plan(settings, state, "train")


def test_rollout_rollback_canary_promote_abort() -> None:
    start = Plan("infer", V1, "yaml", 0)
    out = next_plan(start, "rollout", "2.0.0")
    assert (out.serving, out.previous, out.candidate) == (V2, V1, None) and out.rollout != start.rollout
    back = next_plan(out, "rollback")
    assert (back.serving, back.previous) == (V1, V2)
    canary = next_plan(back, "canary", "2.0.0", share=0.1)
    assert (canary.serving, canary.candidate, canary.share) == (V1, V2, 0.1)
    assert (next_plan(canary, "abort").serving, next_plan(canary, "abort").candidate) == (V1, None)
    promoted = next_plan(canary, "promote")
    assert (promoted.serving, promoted.previous, promoted.candidate) == (V2, V1, None)
    again = revert_of(canary, promoted)
    assert (again.serving, again.candidate, again.share) == (V1, V2, 0.1) and again.rollout != canary.rollout
    with pytest.raises(ConfigError, match="no earlier version"):
        next_plan(start, "rollback")
    with pytest.raises(ConfigError, match="no canary"):
        next_plan(start, "promote")
    with pytest.raises(ConfigError, match="share"):
        next_plan(start, "canary", "2.0.0", share=0.0)
