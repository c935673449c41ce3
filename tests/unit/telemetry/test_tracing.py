"""Spans from the tracing hooks, driven with real envelopes, collected in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from workers.config.settings import load_settings
from workers.config.spec import STAGE_ORDER, PipelineSpec
from workers.errors import ConfigError
from workers.messages import headers as h
from workers.messages.deadline import Deadline, now_ms
from workers.messages.envelope import Envelope, Source
from workers.messages.outcome import Outcome
from workers.telemetry.fanout import Observability, build_telemetry
from workers.telemetry.hooks import NOOP
from workers.telemetry.tracing import (
    SCHEMA_URL,
    Tracing,
    exporters_from_env,
    send_span,
    tracing_wanted,
    upstream_context,
)

MODEL = "kws-student:3:" + "ab" * 32


@pytest.fixture
def pipeline() -> PipelineSpec:
    return load_settings("acoustic").pipeline


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def consumed(headers: h.HeaderList, topic: str, offset: int, payload: bytes = b"x") -> Envelope:
    """An envelope as a stage takes it from `topic`, built from the headers upstream produced."""
    hd = h.as_dict(headers)
    now = now_ms()
    return Envelope(
        id=hd[h.ID],
        key=b"mic-7",
        payload=payload,
        content_type=hd[h.CONTENT_TYPE],
        deadline=Deadline(float(hd[h.DEADLINE_MS])),
        captured_ms=int(hd[h.CAPTURED_MS]),
        taken_ms=now,
        stage_times=h.parse_stage_ms(hd.get(h.STAGE_MS)),
        trace={k: hd[k] for k in (h.TRACEPARENT, h.TRACESTATE) if k in hd},
        model=hd.get(h.MODEL),
        source=Source(topic, 2, offset, int(now) - 3),
    )


def device_headers(provider: TracerProvider, topic: str, frame_id: str = "f-1") -> h.HeaderList:
    now = int(now_ms())
    headers: h.HeaderList = [
        (h.ID, frame_id.encode()),
        (h.DEADLINE_MS, str(now + 250).encode()),
        (h.CAPTURED_MS, str(now).encode()),
        (h.CONTENT_TYPE, b"audio/pcm;format=s16le;rate=16000;channels=1"),
    ]
    with send_span(provider.get_tracer("device"), topic, b"mic-7") as trace_headers:
        headers.extend((k, v.encode()) for k, v in trace_headers.items())
    return headers


def run_stage(
    tracing: Tracing, stage: str, topic: str, out_topic: str, envs: list[Envelope]
) -> list[Outcome]:
    """Call the hooks in the documented order, as the worker loop and Stage.process do."""
    tracing.taken(topic, envs)
    with tracing.phase("decode", envs):
        pass
    with tracing.phase("infer", envs, batch_size=len(envs), model=MODEL):
        pass
    outcomes = []
    with tracing.phase("encode", envs):
        for env in envs:
            timing = h.StageTime(stage, env.queue_ms(), 1.5)
            out = env.forward(b"y", "application/x-ontime-tensor;dtype=float32;shape=1x3", timing)
            if stage == "infer":
                out.model = MODEL
            outcomes.append(Outcome("emit", out))
    tracing.computed(envs, outcomes, 1.5)
    for o in outcomes:
        tracing.producing(o.envelope, out_topic)
    tracing.settled(outcomes)
    return outcomes


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_one_trace_from_device_through_three_stages(
    pipeline: PipelineSpec, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topics = [pipeline.topics.raw, pipeline.topics.features, pipeline.topics.scores, pipeline.topics.results]
    headers = device_headers(provider, topics[0])
    for i, stage in enumerate(STAGE_ORDER):
        tracing = Tracing(pipeline, [stage], provider)
        env = consumed(headers, topics[i], offset=40 + i)
        (outcome,) = run_stage(tracing, stage, topics[i], topics[i + 1], [env])
        headers = outcome.envelope.headers()
        assert env.trace != outcome.envelope.trace, "the input envelope keeps the upstream context"

    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1, "one connected trace"
    ids = {s.context.span_id: s for s in spans}
    for span in spans:  # every span but the device's send has its parent in the trace
        if span.name != f"send {topics[0]}":
            assert span.parent is not None and span.parent.span_id in ids, span.name

    for i, stage in enumerate(STAGE_ORDER):
        (process,) = by_name(spans, f"process {topics[i]}")
        assert process.kind is SpanKind.CONSUMER
        (upstream_send,) = by_name(spans, f"send {topics[i]}")
        assert process.parent is not None and process.parent.span_id == upstream_send.context.span_id
        assert [link.context.span_id for link in process.links] == [upstream_send.context.span_id]
        attrs = process.attributes or {}
        assert attrs["messaging.system"] == "kafka"
        assert attrs["messaging.destination.name"] == topics[i]
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["messaging.kafka.message.key"] == "mic-7"
        assert attrs["messaging.kafka.offset"] == 40 + i
        assert attrs["messaging.consumer.group.name"] == f"ontime.acoustic.{stage}"
        assert attrs["ontime.pipeline"] == "acoustic"
        assert attrs["ontime.stage"] == stage
        assert attrs["ontime.outcome"] == "ok"
        assert attrs["ontime.batch.size"] == 1
        assert attrs["ontime.model.name"] == "kws-student"
        assert attrs["ontime.model.version"] == "3"
        assert 0 < float(attrs["ontime.deadline.remaining_ms"]) <= 250  # type: ignore[arg-type]
        assert float(attrs["ontime.queue_ms"]) >= 0  # type: ignore[arg-type]
        (send,) = by_name(spans, f"send {topics[i + 1]}")
        assert send.kind is SpanKind.PRODUCER
        assert send.parent is not None and send.parent.span_id == process.context.span_id
        assert (send.attributes or {})["messaging.operation.type"] == "send"
        assert send.instrumentation_scope is not None
        assert send.instrumentation_scope.schema_url == SCHEMA_URL
        for phase in ("decode", "infer", "encode"):
            (span,) = [s for s in by_name(spans, phase) if (s.attributes or {})["ontime.stage"] == stage]
            assert span.kind is SpanKind.INTERNAL
            assert span.parent is not None and span.parent.span_id == process.context.span_id
    assert len(spans) == 1 + 3 * 5  # device send + per stage: process, decode, infer, encode, send


def test_infer_is_one_span_linked_to_every_member(
    pipeline: PipelineSpec, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic = pipeline.topics.features
    envs = [
        consumed(device_headers(provider, topic, f"f-{i}"), topic, offset=i, payload=b"%d" % i)
        for i in range(3)
    ]
    run_stage(Tracing(pipeline, ["infer"], provider), "infer", topic, pipeline.topics.scores, envs)

    spans = exporter.get_finished_spans()
    (infer,) = by_name(spans, "infer")
    processes = by_name(spans, f"process {topic}")
    assert len(processes) == 3 and len({p.context.trace_id for p in processes}) == 3
    assert {link.context.span_id for link in infer.links} == {p.context.span_id for p in processes}
    assert (infer.attributes or {})["ontime.batch.size"] == 3
    assert len(by_name(spans, "decode")) == 3 and len(by_name(spans, "encode")) == 3


def test_late_and_dlq_outcomes_are_marked(
    pipeline: PipelineSpec, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic = pipeline.topics.raw
    late, bad = (consumed(device_headers(provider, topic, f"f-{i}"), topic, offset=i) for i in range(2))
    tracing = Tracing(pipeline, ["preprocess"], provider)
    tracing.taken(topic, [late, bad])
    outcomes = [Outcome("late", late, "expired", "gone"), Outcome("dlq", bad, "bad-shape", "3 bytes")]
    tracing.computed([late, bad], outcomes, 0.0)
    tracing.producing(late, pipeline.topics.late)
    tracing.producing(bad, pipeline.topics.dlq)
    tracing.settled(outcomes)

    spans = exporter.get_finished_spans()
    by_id = {(s.attributes or {}).get("messaging.message.id"): s for s in by_name(spans, f"process {topic}")}
    assert (by_id["f-0"].attributes or {})["ontime.outcome"] == "late"
    assert [e.name for e in by_id["f-0"].events] == ["deadline missed"]
    assert (by_id["f-1"].attributes or {})["ontime.outcome"] == "dlq"
    assert by_id["f-1"].status.status_code is StatusCode.ERROR
    sends = by_name(spans, f"send {pipeline.topics.late}") + by_name(spans, f"send {pipeline.topics.dlq}")
    assert len(sends) == 2
    assert late.trace[h.TRACEPARENT].split("-")[2] == format(sends[0].context.span_id, "016x")


def test_stopped_ends_open_spans(
    pipeline: PipelineSpec, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic = pipeline.topics.raw
    tracing = Tracing(pipeline, ["preprocess"], provider)
    tracing.taken(topic, [consumed(device_headers(provider, topic), topic, offset=1)])
    assert by_name(exporter.get_finished_spans(), f"process {topic}") == []
    tracing.stopped()
    (span,) = by_name(exporter.get_finished_spans(), f"process {topic}")
    assert span.status.status_code is StatusCode.ERROR


def test_message_without_upstream_context_starts_a_trace(
    pipeline: PipelineSpec, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    env = consumed(device_headers(provider, "x"), pipeline.topics.raw, offset=1)
    env.trace = {}
    run_stage(Tracing(pipeline, ["preprocess"], provider), "preprocess", env.source.topic, "out", [env])  # type: ignore[union-attr]
    (process,) = by_name(exporter.get_finished_spans(), f"process {pipeline.topics.raw}")
    assert process.parent is None and process.links == ()


def test_upstream_context_ignores_garbage() -> None:
    from opentelemetry import trace

    ctx = upstream_context({"traceparent": "not-a-trace"})
    assert not trace.get_current_span(ctx).get_span_context().is_valid


def test_off_by_default_and_switched_by_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not tracing_wanted(None, {})
    assert tracing_wanted(None, {"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_wanted(None, {"OTEL_TRACES_EXPORTER": "none"})
    assert tracing_wanted(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not tracing_wanted(True, {"OTEL_SDK_DISABLED": "true"})
    assert tracing_wanted(True, {})
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings("acoustic")
    assert build_telemetry(settings, ["infer"]) is NOOP


def test_exporters_from_env() -> None:
    assert exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    (console,) = exporters_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert type(console).__name__ == "ConsoleSpanExporter"
    with pytest.raises(ConfigError, match="not supported"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_build_telemetry_with_injected_exporter(exporter: InMemorySpanExporter) -> None:
    settings = load_settings("acoustic")
    tracing = build_telemetry(settings, ["postprocess"], span_exporter=exporter)
    assert isinstance(tracing, Tracing)  # tracing alone: no fan-out in between
    topic = settings.pipeline.topics.scores
    env = consumed(device_headers(tracing.provider, topic), topic, offset=9)
    run_stage(tracing, "postprocess", topic, settings.pipeline.topics.results, [env])
    names = {s.name for s in exporter.get_finished_spans()}
    assert {f"process {topic}", f"send {settings.pipeline.topics.results}", "infer"} <= names
    with_metrics = load_settings("acoustic", {"worker": {"metrics_port": 0}})
    both = build_telemetry(with_metrics, ["postprocess"], provider=tracing.provider)
    assert isinstance(both, Observability) and both.tracing is not None and both.port
    both.close()
    tracing.shutdown()


def test_revoked_partitions_end_their_spans(
    pipeline: PipelineSpec, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic = pipeline.topics.raw
    tracing = Tracing(pipeline, ["preprocess"], provider)
    envs = [consumed(device_headers(provider, topic, f"f-{i}"), topic, offset=i) for i in range(2)]
    envs[1].source = Source(topic, 5, 1, envs[1].source.timestamp_ms)  # type: ignore[union-attr]
    tracing.taken(topic, envs)
    tracing.assignment([(topic, 2)])  # partition 5 moved to another worker
    (revoked,) = by_name(exporter.get_finished_spans(), f"process {topic}")
    assert (revoked.attributes or {})["messaging.kafka.offset"] == 1
    assert revoked.status.status_code is StatusCode.ERROR


def test_otlp_export_reaches_a_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTLP/HTTP from the OTEL_* variables alone, received by a local HTTP endpoint."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import opentelemetry.exporter.otlp.proto.http  # noqa: F401  (the otlp extra; make setup installs it)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from workers.telemetry.tracing import tracer_provider

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "ontime-test")
        provider = tracer_provider("unused", exporters_from_env())
        with send_span(provider.get_tracer("device"), "acoustic.raw", b"mic-1"):
            pass
        provider.shutdown()  # flushes the batch processor
    finally:
        server.shutdown()
        server.server_close()
    (path, body), *_ = received
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "ontime-test"
    assert [s.name for ss in resource_spans.scope_spans for s in ss.spans] == ["send acoustic.raw"]
