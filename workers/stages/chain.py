"""Several stages in one process: each stage's emitted envelopes go straight into the next stage.

`--stage preprocess,infer,postprocess` saves two Kafka hops for small deployments. The stages are
the same `Stage` objects a single-stage worker runs; only the first stage's input topic is
consumed and only the last stage's output topic is produced, while late and dead-lettered
envelopes leave from whichever stage routed them. A single stage is simply a chain of one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.config.spec import MODELS_DIR, STAGE_ORDER, PipelineSpec
from workers.errors import ConfigError
from workers.messages.deadline import now_ms
from workers.messages.envelope import Envelope, Source
from workers.messages.outcome import Outcome
from workers.messages.reasons import MODEL_ERROR
from workers.stages.stage import Stage, build_stage
from workers.telemetry.hooks import NOOP, Telemetry
from workers.telemetry.logs import event

log = logging.getLogger("ontime.chain")


@dataclass(slots=True)
class Routed:
    """A final outcome and the stage that decided it (named in `ontime-error-stage`)."""

    stage: str
    outcome: Outcome


def parse_stages(text: str) -> list[str]:
    """`"preprocess,infer"` → names in pipeline order; a gap or an unknown name is a ConfigError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGE_ORDER]
    if not names or unknown:
        raise ConfigError(
            f"--stage: unknown stage {', '.join(unknown) or '(none)'}; choose from {', '.join(STAGE_ORDER)}"
        )
    check_order(names)
    return names


def check_order(names: Sequence[str]) -> None:
    """Chained stages must be consecutive in pipeline order, each feeding the next."""
    indices = [STAGE_ORDER.index(n) for n in names]
    if indices != list(range(indices[0], indices[0] + len(indices))):
        raise ConfigError(f"--stage: {','.join(names)} is not a consecutive run of {','.join(STAGE_ORDER)}")


def build_stages(pipeline: PipelineSpec, names: Sequence[str], models_dir: Path = MODELS_DIR) -> list[Stage]:
    """Load each named stage with its verified model."""
    check_order(names)
    return [build_stage(pipeline, n, models_dir=models_dir) for n in names]


def run_chain(stages: Sequence[Stage], batch: list[Envelope], telemetry: Telemetry = NOOP) -> list[Routed]:
    """Final outcomes of `batch` through every stage, handing emitted envelopes on in memory."""
    routed: list[Routed] = []
    for position, stage in enumerate(stages):
        outcomes = _process(stage, batch, telemetry)
        last = position == len(stages) - 1
        batch = []
        for outcome in outcomes:
            if outcome.kind == "emit" and not last:
                batch.append(_handed_on(outcome.envelope))
            else:
                routed.append(Routed(stage.name, outcome))
        if not batch:
            break
    return routed


def _process(stage: Stage, batch: list[Envelope], telemetry: Telemetry) -> list[Outcome]:
    """`stage.process`, and if the batch as a whole fails, each envelope alone.

    A model that raises on one input must not take the other members of its batch down with it:
    the one that still fails alone goes to the DLQ as `model-error`.
    """
    try:
        return stage.process(batch, telemetry)
    except Exception as exc:  # onnxruntime raises untyped errors; isolate the culprit below
        event(log, "batch-failed", logging.WARNING, stage=stage.name, size=len(batch), error=str(exc))
    outcomes: list[Outcome] = []
    for env in batch:
        try:
            outcomes.extend(stage.process([env], telemetry))
        except Exception as exc:
            outcomes.append(Outcome("dlq", env, MODEL_ERROR, f"{type(exc).__name__}: {exc}"))
    return outcomes


def _handed_on(env: Envelope) -> Envelope:
    """The envelope as the next in-process stage takes it: now, with no queue in between.

    Changed in place: the stage built this envelope for the next stage only (`Envelope.forward`),
    and copying it once per frame per stage was a measurable share of a fused worker's CPU.
    """
    now = now_ms()
    src = env.source
    if src is not None:
        env.source = Source(src.topic, src.partition, src.offset, int(now))
    env.taken_ms = now
    return env
