"""Tracing and metrics of the real workers on a real broker.

Three stage workers run as threads sharing one tracer provider with an in-memory exporter; a
frame sent under a device `send` span must come out as one connected trace, and /metrics
scraped from each worker must count exactly the frames that went through.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.pipeline_kit import (
    PCM,
    Reader,
    WorkerThread,
    eval_clips,
    frames_from,
    fresh_pipeline,
    produce,
    send_frames,
    stop_all,
    wait_for,
)
from workers.config.settings import OntimeSettings
from workers.messages import headers as h
from workers.messages.deadline import now_ms
from workers.telemetry.fanout import Observability, build_telemetry
from workers.telemetry.tracing import send_span
from workers.tools.report import read_topic, write_report

STAGES = ["preprocess", "infer", "postprocess"]


@pytest.fixture
def workers() -> Iterator[Callable[[OntimeSettings, TracerProvider | None], list[WorkerThread]]]:
    started: list[WorkerThread] = []

    def start(settings: OntimeSettings, provider: TracerProvider | None) -> list[WorkerThread]:
        with_port = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"metrics_port": 0})}
        )
        for stage in STAGES:
            telemetry = build_telemetry(with_port, [stage], provider=provider)
            assert isinstance(telemetry, Observability) and telemetry.port
            started.append(WorkerThread(with_port, [stage], telemetry=telemetry))
        for r in started:
            wait_for(lambda r=r: _get(r.telemetry.port, "/readyz")[0] == 200, 120, "worker ready")  # type: ignore[misc]
        return started

    yield start
    stop_all(started, after=lambda r: r.telemetry.close())  # type: ignore[attr-defined]


def _get(port: int | None, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except OSError as exc:  # HTTPError (503) and a server not up yet alike
        return getattr(exc, "code", 0), ""


def test_one_frame_is_one_connected_trace_through_three_stages(
    kafka_bootstrap: str, topic_factory: Callable[..., str], workers: Callable[..., list[WorkerThread]]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=2)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    workers(settings, provider)
    topics = settings.pipeline.topics
    frame = frames_from(eval_clips()[:1])[0]
    with send_span(provider.get_tracer("device"), topics.raw, frame.device.encode()) as trace_headers:
        now = str(int(now_ms())).encode()
        headers = [(h.ID, frame.id.encode()), (h.CONTENT_TYPE, PCM.encode()), (h.CAPTURED_MS, now)]
        headers += [(k, v.encode()) for k, v in trace_headers.items()]
        produce(kafka_bootstrap, topics.raw, [(frame.device, frame.payload, headers)])

    done = f"process {topics.scores}"
    wait_for(lambda: any(s.name == done for s in exporter.get_finished_spans()), 120, "trace finished")
    spans = exporter.get_finished_spans()
    provider.shutdown()

    assert len({s.context.trace_id for s in spans}) == 1, "one connected trace"
    by_id = {s.context.span_id: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == [f"send {topics.raw}"]
    for span in spans:
        assert span.parent is None or span.parent.span_id in by_id, f"{span.name} has a dangling parent"

    def one(name: str) -> ReadableSpan:
        found = [s for s in spans if s.name == name]
        assert len(found) == 1, (name, [s.name for s in spans])
        return found[0]

    hops = [topics.raw, topics.features, topics.scores, topics.results]
    for i, stage in enumerate(STAGES):
        process = one(f"process {hops[i]}")
        upstream = one(f"send {hops[i]}")
        send = one(f"send {hops[i + 1]}")
        assert process.kind is SpanKind.CONSUMER and send.kind is SpanKind.PRODUCER
        assert process.parent is not None and process.parent.span_id == upstream.context.span_id
        assert send.parent is not None and send.parent.span_id == process.context.span_id
        attrs = dict(process.attributes or {})
        assert attrs["messaging.system"] == "kafka"
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["messaging.destination.name"] == hops[i]
        assert attrs["messaging.consumer.group.name"] == settings.pipeline.group_id(stage)
        assert attrs["messaging.kafka.message.key"] == frame.device
        assert isinstance(attrs["messaging.kafka.offset"], int)
        assert attrs["ontime.pipeline"] == settings.pipeline.name
        assert attrs["ontime.stage"] == stage
        assert attrs["ontime.outcome"] == "ok"
        assert attrs["ontime.batch.size"] == 1
        assert isinstance(attrs["ontime.model.name"], str) and attrs["ontime.model.version"]
        assert float(attrs["ontime.deadline.remaining_ms"]) > 0  # type: ignore[arg-type]
        children = {s.name: s for s in spans if s.parent and s.parent.span_id == process.context.span_id}
        for phase in ("decode", "infer", "encode"):
            assert children[phase].kind is SpanKind.INTERNAL, (stage, phase)
            assert (children[phase].attributes or {})["ontime.stage"] == stage
        assert [link.context.span_id for link in children["infer"].links] == [process.context.span_id]
    assert len(spans) == 1 + 3 * 5, sorted(s.name for s in spans)


def test_metrics_count_the_frames_that_went_through(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    workers: Callable[..., list[WorkerThread]],
    tmp_path: Path,
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=3)
    running = workers(settings, None)
    frames = frames_from(eval_clips()[:24])
    topics = settings.pipeline.topics
    reader = Reader(kafka_bootstrap, [topics.results], topics.partitions)
    try:
        sent = send_frames(kafka_bootstrap, topics.raw, frames)
        reader.read_until(lambda rs: len(rs) >= sent, timeout=180)
    finally:
        reader.close()

    def counts(r: WorkerThread) -> dict[str, float]:
        text = _get(r.telemetry.port, "/metrics")[1]
        return {
            s.labels["outcome"]: s.value
            for f in text_string_to_metric_families(text)
            if f.name == "ontime_messages"
            for s in f.samples
            if s.name == "ontime_messages_total"
        }

    for r, stage in zip(running, STAGES, strict=True):
        # A result is read as soon as it is delivered; the worker settles it just after.
        wait_for(lambda r=r: counts(r).get("ok") == sent, 30, f"{stage} settled")  # type: ignore[misc]
        assert counts(r) == {"ok": sent, "degraded": 0, "late": 0, "dlq": 0}, stage
    text = _get(running[-1].telemetry.port, "/metrics")[1]
    samples = {
        (s.name, s.labels.get("stage")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("ontime_end_to_end_seconds_count", "postprocess")] == sent
    assert samples[("ontime_stage_compute_seconds_count", "postprocess")] == sent
    assert samples[("ontime_stage_queue_seconds_count", "postprocess")] == sent
    assert samples[("ontime_stage_ready", "postprocess")] == 1

    # `ontime report --topic` reads the same results back, and draws them.
    results, skipped = read_topic({"bootstrap.servers": kafka_bootstrap}, topics.results, timeout_s=60)
    assert (len(results), skipped) == (sent, 0)
    assert {r.id for r in results} == {f.id for f in frames}
    paths = write_report(results, tmp_path, settings.pipeline)
    assert all(p.stat().st_size > 0 for p in paths)
