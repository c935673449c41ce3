"""Per-version series for canary and A/B comparisons, and rollout changes counted by result."""

from __future__ import annotations

from tests.unit.telemetry.test_metrics import emit, envelope, value
from workers.config.settings import load_settings
from workers.messages.outcome import Outcome
from workers.telemetry.metrics import Metrics

V1, V2 = "acoustic-student-int8:1.0.0:" + "a" * 64, "acoustic-student-int8:2.0.0:" + "b" * 64


def test_outcomes_and_model_time_are_counted_per_answering_version() -> None:
    pipeline = load_settings("acoustic").pipeline
    metrics = Metrics(pipeline, ["infer"])
    envs = [envelope(pipeline.topics.features, i, stages_done=["preprocess"]) for i in range(5)]
    with metrics.phase("infer", envs[:3], batch_size=3, model=V1, variant="primary"):
        pass
    with metrics.phase("infer", envs[3:], batch_size=2, model=V2, variant="candidate"):
        pass
    outcomes = []
    for i, e in enumerate(envs):
        out = emit(e, "infer", "degraded" if i == 1 else "ok")
        out.envelope.model = V1 if i < 3 else V2
        outcomes.append(out)
    outcomes.append(Outcome("dlq", envelope(pipeline.topics.features, 9), "bad-shape", ""))  # no version
    metrics.settled(outcomes)
    infer = {"pipeline": "acoustic", "stage": "infer", "model": "acoustic-student-int8"}
    assert value(metrics, "ontime_version_messages_total", **infer, version="1.0.0", outcome="ok") == 2
    assert value(metrics, "ontime_version_messages_total", **infer, version="1.0.0", outcome="degraded") == 1
    assert value(metrics, "ontime_version_messages_total", **infer, version="2.0.0", outcome="ok") == 2
    assert value(metrics, "ontime_version_compute_seconds_count", **infer, version="1.0.0") == 3
    assert value(metrics, "ontime_version_compute_seconds_count", **infer, version="2.0.0") == 2
    assert value(metrics, "ontime_model_info", **infer, version="2.0.0", variant="candidate") == 1


def test_rollout_changes_by_result_and_the_old_version_leaves_model_info() -> None:
    pipeline = load_settings("acoustic").pipeline
    metrics = Metrics(pipeline, ["infer"])
    env = envelope(pipeline.topics.features, 0, stages_done=["preprocess"])
    with metrics.phase("infer", [env], batch_size=1, model=V1):
        pass
    metrics.model_changed("infer", "acoustic/student-int8@3.0.0", "checksum")
    metrics.model_changed("infer", "acoustic/student-int8@2.0.0", "applied")
    variant = {"pipeline": "acoustic", "stage": "infer", "model": "acoustic/student-int8"}
    assert value(metrics, "ontime_model_changes_total", **variant, version="3.0.0", result="checksum") == 1
    assert value(metrics, "ontime_model_changes_total", **variant, version="2.0.0", result="applied") == 1
    served = {
        "pipeline": "acoustic",
        "stage": "infer",
        "model": "acoustic-student-int8",
        "variant": "primary",
    }
    assert value(metrics, "ontime_model_info", **served, version="1.0.0") == 0


def test_drift_follows_the_serving_version_after_a_rollout_not_a_canary() -> None:
    from prometheus_client import CollectorRegistry

    from workers.telemetry.drift import DriftMonitor

    pipeline = load_settings("acoustic").pipeline
    drift = DriftMonitor(pipeline, ["infer"], CollectorRegistry())
    assert drift.watch["infer"].identity.split(":")[1] == "1.1.0"  # the YAML pins acoustic/student-int8@1.1.0
    drift.model_changed("infer", "acoustic/student-int8@2.0.0", "applied", "candidate")
    assert drift.watch["infer"].identity.split(":")[1] == "1.1.0"  # a canary does not move the reference
    drift.model_changed("infer", "acoustic/student-int8@2.0.0", "applied", "serving")
    assert drift.watch["infer"].identity.split(":")[1] == "2.0.0"  # its own card's reference, a fresh window
