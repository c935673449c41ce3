"""The hooks a stage worker calls so tracing, metrics and health can watch it.

`Telemetry` is the no-op base: every hook costs one method call when observability is off.
Implementations (OpenTelemetry tracing, Prometheus metrics, health probes) subclass it; the
worker loop and `Stage.process` call the hooks at fixed points, in this order per batch:

    taken(envs) → phase("decode") → phase("infer") → phase("encode") → computed(...)
    → producing(env, topic) per output → settled(outcomes) after delivery and offset store

`phase` wraps a part of the batch in a context manager (an INTERNAL span for a tracer).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.messages.envelope import Envelope
    from workers.messages.outcome import Outcome


class Telemetry:
    """No-op observer of one stage; subclasses override what they need."""

    def started(self, pipeline: str, stage: str) -> None:
        """The stage's models are loaded and warmed up."""

    def taken(self, topic: str, envs: Sequence[Envelope]) -> None:
        """Envelopes were taken from `topic` (a per-message CONSUMER span starts here)."""

    def phase(
        self, name: str, envs: Sequence[Envelope], **attributes: object
    ) -> AbstractContextManager[None]:
        """A part of the batch's work: decode, infer, encode."""
        return _nothing()

    def computed(self, envs: Sequence[Envelope], outcomes: Sequence[Outcome], compute_ms: float) -> None:
        """A batch finished computing; `outcomes` are aligned with `envs`."""

    def producing(self, env: Envelope, topic: str) -> None:
        """`env` is about to be produced to `topic`; a tracer injects its context into `env.trace`."""

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        """The outputs of these outcomes were delivered and their offsets stored."""

    def poll_turned(self) -> None:
        """The poll loop made one more turn (liveness)."""

    def assignment(self, partitions: Sequence[tuple[str, int]]) -> None:
        """The partitions currently assigned to this worker."""

    def lag(self, topic: str, partition: int, lag: int, oldest_age_ms: float | None) -> None:
        """Consumer lag of one partition and the age of its oldest unprocessed message."""

    def model_changed(self, stage: str, ref: str, result: str, role: str = "serving") -> None:
        """A rollout put version `ref` (`<pipeline>/<variant>@<version>`) into service as the
        `serving` version or a canary `candidate` (`result` is `applied`), or refused it (`result`
        is the refusal code: missing, checksum, shape, warm-up)."""

    def holding(self, reason: str | None) -> None:
        """The worker stopped taking input and says why (circuit open, broker unreachable), or
        resumed (`None`): a holding worker is alive but not ready."""

    def stopped(self) -> None:
        """The worker left its group; flush exporters."""


@contextmanager
def _nothing() -> Iterator[None]:
    yield


NOOP = Telemetry()
