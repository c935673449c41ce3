"""Compose tracing, metrics and health into the one `Telemetry` a worker process calls.

`build_telemetry` returns the shared no-op `NOOP` when tracing is off and no metrics port is
set, so a worker without observability pays one empty method call per hook.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from workers.telemetry.drift import DriftMonitor
from workers.telemetry.health import Health
from workers.telemetry.hooks import NOOP, Telemetry
from workers.telemetry.metrics import Metrics
from workers.telemetry.tracing import Tracing, exporters_from_env, tracer_provider, tracing_wanted

if TYPE_CHECKING:
    from workers.config.settings import OntimeSettings
    from workers.messages.envelope import Envelope
    from workers.messages.outcome import Outcome

__all__ = ["Fanout", "Observability", "build_telemetry"]


class Fanout(Telemetry):
    """Calls every member's hook, in order (tracing first, so spans wrap the others' work)."""

    def __init__(self, members: Sequence[Telemetry]) -> None:
        self.members = list(members)

    def started(self, pipeline: str, stage: str) -> None:
        for m in self.members:
            m.started(pipeline, stage)

    def taken(self, topic: str, envs: Sequence[Envelope]) -> None:
        for m in self.members:
            m.taken(topic, envs)

    def phase(
        self, name: str, envs: Sequence[Envelope], **attributes: object
    ) -> AbstractContextManager[None]:
        return self._phases(name, envs, attributes)

    @contextmanager
    def _phases(self, name: str, envs: Sequence[Envelope], attributes: dict[str, object]) -> Iterator[None]:
        with ExitStack() as stack:
            for m in self.members:
                stack.enter_context(m.phase(name, envs, **attributes))
            yield

    def computed(self, envs: Sequence[Envelope], outcomes: Sequence[Outcome], compute_ms: float) -> None:
        for m in self.members:
            m.computed(envs, outcomes, compute_ms)

    def producing(self, env: Envelope, topic: str) -> None:
        for m in self.members:
            m.producing(env, topic)

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        for m in self.members:
            m.settled(outcomes)

    def poll_turned(self) -> None:
        for m in self.members:
            m.poll_turned()

    def assignment(self, partitions: Sequence[tuple[str, int]]) -> None:
        for m in self.members:
            m.assignment(partitions)

    def lag(self, topic: str, partition: int, lag: int, oldest_age_ms: float | None) -> None:
        for m in self.members:
            m.lag(topic, partition, lag, oldest_age_ms)

    def model_changed(self, stage: str, ref: str, result: str, role: str = "serving") -> None:
        for m in self.members:
            m.model_changed(stage, ref, result, role)

    def holding(self, reason: str | None) -> None:
        for m in self.members:
            m.holding(reason)

    def stopped(self) -> None:
        for m in self.members:
            m.stopped()


class Observability(Fanout):
    """The composed telemetry, with handles on its parts for tests and the CLI."""

    def __init__(
        self,
        tracing: Tracing | None,
        metrics: Metrics | None,
        health: Health | None,
        drift: DriftMonitor | None = None,
    ) -> None:
        super().__init__([m for m in (tracing, metrics, drift, health) if m is not None])
        self.tracing = tracing
        self.metrics = metrics
        self.health = health
        self.drift = drift

    @property
    def port(self) -> int | None:
        """The port serving /metrics, /livez and /readyz, if any."""
        return None if self.health is None else self.health.port

    def close(self) -> None:
        """Stop the HTTP server and flush spans; for tests and orderly shutdown."""
        if self.health is not None:
            self.health.close()
        if self.tracing is not None:
            self.tracing.provider.force_flush()


def build_telemetry(
    settings: OntimeSettings,
    stages: list[str],
    *,
    span_exporter: SpanExporter | None = None,
    provider: TracerProvider | None = None,
) -> Telemetry:
    """Telemetry for a worker running `stages`: NOOP when everything is off, `Tracing` alone
    when only tracing is on, else an `Observability` fan-out.

    Tracing is on when `settings.observability.tracing` says so, else when the `OTEL_*`
    environment names an exporter; `span_exporter` or `provider` (tests, or a provider shared
    by workers in one process) turn it on too. Metrics and health need `worker.metrics_port`.
    """
    pipeline = settings.pipeline
    obs = settings.observability
    tracing: Tracing | None = None
    if provider is not None or span_exporter is not None or tracing_wanted(obs.tracing):
        if provider is None:
            service = f"ontime-{pipeline.name}" + (f"-{stages[0]}" if len(stages) == 1 else "")
            if span_exporter is not None:
                provider = tracer_provider(service, [span_exporter], batch=False)
            else:
                provider = tracer_provider(service, exporters_from_env())
        tracing = Tracing(pipeline, stages, provider)
    metrics: Metrics | None = None
    health: Health | None = None
    port = settings.worker.metrics_port
    drift: DriftMonitor | None = None
    if port is not None:
        metrics = Metrics(pipeline, stages)
        if obs.drift:
            drift = DriftMonitor(
                pipeline,
                stages,
                metrics.registry,
                models_dir=settings.models_dir,
                window_frames=obs.drift_window_frames,
            )
        health = Health(stages, metrics.registry, liveness_timeout_s=obs.liveness_timeout_s)
        health.serve(port)
    if metrics is None:
        return NOOP if tracing is None else tracing  # no fan-out, and no lag polling for nobody
    return Observability(tracing, metrics, health, drift)
