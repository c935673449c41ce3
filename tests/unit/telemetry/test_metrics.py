"""Prometheus series from the hooks, and the /metrics, /livez, /readyz endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from workers.config.settings import load_settings
from workers.config.spec import PipelineSpec
from workers.messages import headers as h
from workers.messages.deadline import Deadline, now_ms
from workers.messages.envelope import Envelope, Source
from workers.messages.outcome import Outcome
from workers.telemetry.drift import DriftMonitor
from workers.telemetry.fanout import Observability, build_telemetry
from workers.telemetry.health import Health
from workers.telemetry.metrics import LATENCY_BUCKETS, Metrics, stage_of


@pytest.fixture
def pipeline() -> PipelineSpec:
    return load_settings("acoustic").pipeline


def envelope(
    topic: str, offset: int, *, stages_done: list[str] | None = None, captured_ago_ms: float | None = 40.0
) -> Envelope:
    now = now_ms()
    return Envelope(
        id=f"f-{offset}",
        key=b"mic-1",
        payload=b"x",
        content_type="application/x-ontime-tensor;dtype=float32;shape=1x3",
        deadline=Deadline(now + 200),
        captured_ms=None if captured_ago_ms is None else int(now - captured_ago_ms),
        taken_ms=now,
        stage_times=[h.StageTime(s, 1.0, 2.0) for s in stages_done or []],
        source=Source(topic, offset % 3, offset, int(now) - 12),
    )


def emit(env: Envelope, stage: str, status: str = "ok") -> Outcome:
    out = env.forward(b"y", env.content_type, h.StageTime(stage, env.queue_ms(), 3.0))
    out.status = status
    return Outcome("emit", out)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_counts_and_histograms_from_hooks(pipeline: PipelineSpec) -> None:
    metrics = Metrics(pipeline, ["postprocess"])
    topic = pipeline.topics.scores
    done = ["preprocess", "infer"]
    envs = [envelope(topic, i, stages_done=done) for i in range(5)]
    envs[3].captured_ms = None  # end-to-end then counts from deadline minus budget
    metrics.taken(topic, envs)
    with metrics.phase("infer", envs, batch_size=4, model="kws:2:" + "0" * 64):
        pass
    outcomes = [
        emit(envs[0], "postprocess"),
        emit(envs[1], "postprocess", "degraded"),
        Outcome("late", envs[2], "expired", ""),
        emit(envs[3], "postprocess"),
        emit(envs[4], "postprocess", "late"),  # late_policy: deliver
    ]
    metrics.computed(envs, outcomes, 3.0)
    metrics.settled(outcomes)

    stage = {"pipeline": "acoustic", "stage": "postprocess"}
    assert value(metrics, "ontime_messages_total", **stage, outcome="ok") == 2
    assert value(metrics, "ontime_messages_total", **stage, outcome="degraded") == 1
    assert value(metrics, "ontime_messages_total", **stage, outcome="late") == 2
    assert value(metrics, "ontime_messages_total", **stage, outcome="dlq") == 0
    assert value(metrics, "ontime_stage_queue_seconds_count", **stage) == 5
    assert value(metrics, "ontime_stage_queue_seconds_sum", **stage) >= 5 * 0.012 - 1e-9
    assert value(metrics, "ontime_stage_compute_seconds_count", **stage) == 4
    assert value(metrics, "ontime_batch_size_count", **stage) == 1
    assert value(metrics, "ontime_batch_size_sum", **stage) == 5
    assert value(metrics, "ontime_end_to_end_seconds_count", **stage) == 4
    assert value(metrics, "ontime_end_to_end_seconds_sum", **stage) >= 0.040 * 2
    assert value(metrics, "ontime_deadline_slack_seconds_count", **stage) == 4
    assert value(metrics, "ontime_model_info", **stage, model="kws", version="2", variant="primary") == 1


def test_end_to_end_only_at_the_last_stage(pipeline: PipelineSpec) -> None:
    metrics = Metrics(pipeline, ["infer"])
    env = envelope(pipeline.topics.features, 1, stages_done=["preprocess"])
    outcome = emit(env, "infer")
    metrics.computed([env], [outcome], 1.0)
    metrics.settled([outcome])
    assert value(metrics, "ontime_messages_total", pipeline="acoustic", stage="infer", outcome="ok") == 1
    assert value(metrics, "ontime_end_to_end_seconds_count", pipeline="acoustic", stage="infer") == 0


def test_chained_stages_are_told_apart_by_their_stage_times(pipeline: PipelineSpec) -> None:
    stages = ["preprocess", "infer", "postprocess"]
    raw = envelope(pipeline.topics.raw, 1)
    assert stage_of(raw, stages) == "preprocess"
    features = raw.forward(b"", "", h.StageTime("preprocess", 0, 1))
    assert stage_of(features, stages, output=True) == "preprocess"
    assert stage_of(features, stages) == "infer"
    assert stage_of(features, ["infer"]) == "infer"


def test_lag_and_oldest_age(pipeline: PipelineSpec) -> None:
    metrics = Metrics(pipeline, ["infer"])
    topic = pipeline.topics.features
    metrics.assignment([(topic, 0), (topic, 1)])
    metrics.lag(topic, 0, 12, 800.0)
    metrics.lag(topic, 1, 3, 150.0)
    labels = {"pipeline": "acoustic", "stage": "infer"}
    assert value(metrics, "ontime_consumer_lag", **labels, topic=topic, partition="0") == 12
    assert value(metrics, "ontime_oldest_unprocessed_age_seconds", **labels) == pytest.approx(0.8)
    metrics.assignment([(topic, 1)])  # partition 0 went to another replica
    assert (
        metrics.registry.get_sample_value("ontime_consumer_lag", {**labels, "topic": topic, "partition": "0"})
        is None
    )
    assert value(metrics, "ontime_oldest_unprocessed_age_seconds", **labels) == pytest.approx(0.15)
    metrics.lag(topic, 1, 0, None)
    assert value(metrics, "ontime_oldest_unprocessed_age_seconds", **labels) == 0


def test_buckets_are_dense_around_the_budget() -> None:
    assert LATENCY_BUCKETS[0] <= 0.005 and LATENCY_BUCKETS[-1] == 2.5
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    assert sum(1 for b in LATENCY_BUCKETS if 0.05 <= b <= 0.3) >= 15


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def health() -> Iterator[tuple[Health, Clock, Metrics]]:
    clock = Clock()
    metrics = Metrics(load_settings("acoustic").pipeline, ["infer"])
    probe = Health(["infer"], metrics.registry, liveness_timeout_s=10.0, clock=clock)
    probe.serve(0, host="127.0.0.1")
    yield probe, clock, metrics
    probe.close()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_livez_fails_when_the_poll_loop_stalls(health: tuple[Health, Clock, Metrics]) -> None:
    probe, clock, _ = health
    assert probe.port
    assert get(probe.port, "/livez")[0] == 200  # still loading models
    probe.started("acoustic", "infer")
    probe.poll_turned()
    clock.now += 9.0
    assert get(probe.port, "/livez")[0] == 200
    clock.now += 2.0
    code, body = get(probe.port, "/livez")
    assert code == 503 and "idle for 11.0 s" in body
    probe.poll_turned()
    assert get(probe.port, "/livez")[0] == 200


def test_readyz_waits_for_warm_models_and_assignment(health: tuple[Health, Clock, Metrics]) -> None:
    probe, _, _ = health
    assert probe.port
    code, body = get(probe.port, "/readyz")
    assert code == 503 and "infer" in body
    probe.started("acoustic", "infer")
    code, body = get(probe.port, "/readyz")
    assert code == 503 and "assignment" in body
    probe.assignment([("acoustic.features", 0), ("acoustic.features", 3)])
    code, body = get(probe.port, "/readyz")
    assert code == 200 and "2 partition(s)" in body
    assert get(probe.port, "/nope")[0] == 404


def test_metrics_endpoint_serves_the_registry(health: tuple[Health, Clock, Metrics]) -> None:
    probe, _, metrics = health
    assert probe.port
    metrics.started("acoustic", "infer")
    code, text = get(probe.port, "/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "ontime_messages" in families and "ontime_stage_queue_seconds" in families
    ready = [s for s in families["ontime_stage_ready"].samples if s.labels["stage"] == "infer"]
    assert [s.value for s in ready] == [1.0]


def test_build_telemetry_serves_on_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    settings = load_settings("acoustic", {"worker": {"metrics_port": 0}})
    telemetry = build_telemetry(settings, ["preprocess"])
    assert isinstance(telemetry, Observability)
    try:
        assert telemetry.tracing is None and telemetry.metrics is not None
        assert telemetry.port
        assert get(telemetry.port, "/readyz")[0] == 503
        telemetry.started("acoustic", "preprocess")
        telemetry.assignment([])  # a replica beyond the partition count is a ready standby
        assert get(telemetry.port, "/readyz")[0] == 200
        telemetry.stopped()
        assert telemetry.port is None  # the last stage stopped: the server closed
    finally:
        telemetry.close()


def test_dashboard_queries_name_only_metrics_that_exist(pipeline: PipelineSpec) -> None:
    import json
    import re
    from pathlib import Path

    board = json.loads((Path(__file__).parents[3] / "helm/ontime/dashboards/ontime.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert float(variables["budget_le"]["query"]) in LATENCY_BUCKETS
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
    metrics = Metrics(pipeline, ["infer"])
    DriftMonitor(pipeline, ["infer"], metrics.registry)
    exposed = {
        family.name + suffix for family in metrics.registry.collect() for suffix in suffixes[family.type]
    }
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    used = {name for e in exprs for name in re.findall(r"\bontime_[a-z_]+", e)}
    assert used and used <= exposed, used - exposed
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
