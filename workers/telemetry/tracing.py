"""OpenTelemetry spans for a stage, hand-written after the messaging semantic conventions v1.27.0.

Per message a CONSUMER span `process <topic>` continues the upstream trace found in the
`traceparent`/`tracestate` headers (as parent, and as a link, which the conventions require);
`decode` and `encode` are INTERNAL children of it, `infer` is one INTERNAL span for the whole
batch linked to every member; `send <topic>` PRODUCER spans inject their own context into the
outgoing headers, so the next stage's `process` span is their child. Spans of a message end in
`settled`, once its output is delivered. The contrib Kafka instrumentation is not used: its
conventions are older than the ones followed here.

Exporters come from the standard `OTEL_*` variables (`OTEL_TRACES_EXPORTER=otlp|console|none`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from workers.config.spec import PipelineSpec
from workers.errors import ConfigError
from workers.messages.deadline import now_ms
from workers.telemetry.hooks import Telemetry
from workers.telemetry.metrics import outcome_label, stage_of

if TYPE_CHECKING:
    from workers.messages.envelope import Envelope
    from workers.messages.outcome import Outcome

SEMCONV_VERSION = "1.27.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
INSTRUMENTATION = "ontime.workers"

_PROPAGATOR = TraceContextTextMapPropagator()

Key = tuple[str, int, int] | str
"""Identifies one consumed message across its input and output envelopes."""


def _key(env: Envelope) -> Key:
    # `forward` keeps `source`, so input and output envelopes of one record share this key.
    src = env.source
    return (src.topic, src.partition, src.offset) if src is not None else env.id


def upstream_context(carrier: Mapping[str, str]) -> Context:
    """The W3C trace context found in a message's headers (an empty context if none)."""
    return _PROPAGATOR.extract(carrier=dict(carrier))


def inject(span: Span) -> dict[str, str]:
    """Fresh `traceparent` (and `tracestate`) headers naming `span` as the parent."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


@contextmanager
def send_span(tracer: Tracer, topic: str, key: bytes | None = None) -> Iterator[dict[str, str]]:
    """A `send <topic>` PRODUCER span for code outside a stage (the device simulator).

    Yields the headers to put on the record; the span ends when the block exits. This makes
    the device the root of the frame's trace.
    """
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
    }
    if key:
        attributes["messaging.kafka.message.key"] = key.decode("utf-8", errors="replace")
    with tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
        yield inject(span)


def tracing_wanted(flag: bool | None, environ: Mapping[str, str] | None = None) -> bool:
    """On when forced, else when an exporter or an OTLP endpoint is named in the environment."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if flag is not None:
        return flag
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def exporters_from_env(environ: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """Span exporters named by OTEL_TRACES_EXPORTER (default otlp); OTLP is imported only if named."""
    env = os.environ if environ is None else environ
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    out: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        elif name == "otlp":
            out.append(_otlp_exporter(env))
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported; use otlp, console or none")
    return out


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    flavour = "grpc" if protocol == "grpc" else "http"
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{flavour}.trace_exporter")
    except ImportError:
        package = f"opentelemetry-exporter-otlp-proto-{flavour}"
        hint = "'ontime[otlp]'" if flavour == "http" else package
        raise ConfigError(
            f"OTLP trace export needs {package}: pip install {hint} (or set OTEL_TRACES_EXPORTER=none)"
        ) from None
    exporter: SpanExporter = module.OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    return exporter


def tracer_provider(
    service_name: str, exporters: Sequence[SpanExporter], *, batch: bool = True
) -> TracerProvider:
    """A provider with `service.name` (OTEL_SERVICE_NAME wins) and one processor per exporter."""
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


class _Message:
    """Open spans of one message in this stage."""

    __slots__ = ("process", "sends")

    def __init__(self, process: Span) -> None:
        self.process = process
        self.sends: list[Span] = []


class Tracing(Telemetry):
    """Spans for the stages of one worker process; safe to share between stage threads."""

    def __init__(self, pipeline: PipelineSpec, stages: Sequence[str], provider: TracerProvider) -> None:
        self.pipeline = pipeline
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION, schema_url=SCHEMA_URL)
        self.stages = list(stages)
        self._stage_by_topic = {pipeline.input_topic(s): s for s in stages}
        self._error_topics = {pipeline.topics.late, pipeline.topics.dlq}  # these carry the input envelope
        self._open: dict[Key, _Message] = {}
        self._lock = threading.Lock()

    def _message(self, env: Envelope) -> _Message | None:
        with self._lock:
            return self._open.get(_key(env))

    def taken(self, topic: str, envs: Sequence[Envelope]) -> None:
        for env in envs:
            stage = self._stage_by_topic.get(topic) or stage_of(env, self.stages)
            upstream = upstream_context(env.trace)
            parent = trace.get_current_span(upstream).get_span_context()
            attributes: dict[str, str | int | float] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": self.pipeline.group_id(stage),
                "messaging.message.id": env.id,
                "ontime.pipeline": self.pipeline.name,
                "ontime.stage": stage,
                "ontime.deadline.remaining_ms": round(env.deadline.remaining_ms(env.taken_ms), 3),
                "ontime.queue_ms": round(env.queue_ms(), 3),
            }
            if env.key:
                attributes["messaging.kafka.message.key"] = env.key.decode("utf-8", errors="replace")
            if env.source is not None:
                attributes["messaging.kafka.offset"] = env.source.offset
                attributes["messaging.destination.partition.id"] = str(env.source.partition)
            span = self.tracer.start_span(
                f"process {topic}",
                context=upstream,
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                links=[Link(parent)] if parent.is_valid else None,
                start_time=int(env.taken_ms * 1_000_000),
            )
            with self._lock:
                self._open[_key(env)] = _Message(span)

    def phase(
        self, name: str, envs: Sequence[Envelope], **attributes: object
    ) -> AbstractContextManager[None]:
        if name == "infer":
            return self._batch_span(name, envs, attributes)
        return self._member_spans(name, envs, attributes)

    @contextmanager
    def _batch_span(self, name: str, envs: Sequence[Envelope], extra: dict[str, object]) -> Iterator[None]:
        """One span for the batch: child of the first member, linked to every member."""
        members = [m for m in (self._message(e) for e in envs) if m is not None]
        parent = trace.set_span_in_context(members[0].process) if members else None
        stage = stage_of(envs[0], self.stages) if envs else ""
        attributes = _phase_attributes(self.pipeline.name, stage, extra)
        attributes["ontime.batch.size"] = len(envs)
        links = [Link(m.process.get_span_context()) for m in members]
        model = {k: v for k, v in attributes.items() if k.startswith("ontime.model.")}
        for m in members:  # the model this stage ran for the message
            m.process.set_attributes(model)
        with self.tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.INTERNAL, attributes=attributes, links=links
        ):
            yield

    @contextmanager
    def _member_spans(self, name: str, envs: Sequence[Envelope], extra: dict[str, object]) -> Iterator[None]:
        """One child span per member; the batch's phase time is each member's."""
        spans: list[Span] = []
        for env in envs:
            message = self._message(env)
            if message is None:
                continue
            attributes = _phase_attributes(self.pipeline.name, stage_of(env, self.stages), extra)
            attributes["ontime.batch.size"] = len(envs)
            context = trace.set_span_in_context(message.process)
            spans.append(
                self.tracer.start_span(name, context=context, kind=SpanKind.INTERNAL, attributes=attributes)
            )
        try:
            yield
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    def computed(self, envs: Sequence[Envelope], outcomes: Sequence[Outcome], compute_ms: float) -> None:
        for outcome in outcomes:
            message = self._message(outcome.envelope)
            if message is None:
                continue
            span = message.process
            span.set_attribute("ontime.batch.size", len(envs))
            span.set_attribute("ontime.compute_ms", round(compute_ms, 3))
            if outcome.kind == "emit":
                span.set_attribute("ontime.outcome", outcome_label(outcome))
            else:
                span.set_attribute("ontime.outcome", outcome.kind)
                span.set_attribute("ontime.error.reason", outcome.reason)
                if outcome.kind == "dlq":
                    span.set_status(Status(StatusCode.ERROR, f"{outcome.reason}: {outcome.detail}"[:200]))
                else:
                    span.add_event("deadline missed", {"reason": outcome.reason, "detail": outcome.detail})

    def producing(self, env: Envelope, topic: str) -> None:
        message = self._message(env)
        if message is None:
            return
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": env.id,
            "ontime.pipeline": self.pipeline.name,
            "ontime.stage": stage_of(env, self.stages, output=topic not in self._error_topics),
        }
        if env.key:
            attributes["messaging.kafka.message.key"] = env.key.decode("utf-8", errors="replace")
        span = self.tracer.start_span(
            f"send {topic}",
            context=trace.set_span_in_context(message.process),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        message.sends.append(span)
        # A new dict: `forward` shares the input's trace dict, which must keep the upstream context.
        env.trace = inject(span)

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        now = now_ms()
        for outcome in outcomes:
            with self._lock:
                message = self._open.pop(_key(outcome.envelope), None)
            if message is None:
                continue
            for send in message.sends:
                send.end()
            slack = outcome.envelope.deadline.remaining_ms(now)
            message.process.set_attribute("ontime.deadline.slack_ms", round(slack, 3))
            message.process.end()

    def assignment(self, partitions: Sequence[tuple[str, int]]) -> None:
        # Records of a revoked partition are never settled here: their new owner processes them.
        owned = set(partitions)
        with self._lock:
            gone = [k for k in self._open if isinstance(k, tuple) and (k[0], k[1]) not in owned]
            left = [self._open.pop(k) for k in gone]
        _abandon(left, "partition revoked before delivery")

    def stopped(self) -> None:
        with self._lock:
            left = list(self._open.values())
            self._open.clear()
        _abandon(left, "worker stopped before delivery")
        self.provider.force_flush()

    def shutdown(self) -> None:
        """Flush and close the exporters (the provider is this object's to close)."""
        self.provider.shutdown()


def _abandon(messages: Sequence[_Message], why: str) -> None:
    for message in messages:
        for send in message.sends:
            send.end()
        message.process.set_status(Status(StatusCode.ERROR, why))
        message.process.end()


def _phase_attributes(pipeline: str, stage: str, extra: dict[str, object]) -> dict[str, str | int | float]:
    attributes: dict[str, str | int | float] = {"ontime.pipeline": pipeline, "ontime.stage": stage}
    for key, value in extra.items():
        if key == "model" and isinstance(value, str):
            name, version = _model_name_version(value)
            attributes["ontime.model.name"] = name
            attributes["ontime.model.version"] = version
        elif key == "batch_size" and isinstance(value, int):
            attributes["ontime.batch.size"] = value
        elif isinstance(value, str | int | float):
            attributes[f"ontime.{key}"] = value
    return attributes


def _model_name_version(identity: str) -> tuple[str, str]:
    name, _, rest = identity.partition(":")
    version = rest.partition(":")[0]
    return name, version
