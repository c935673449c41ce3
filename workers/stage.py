"""The three stage computations, free of Kafka: envelopes in, outcomes out.

`Stage.process` is what both the Kafka worker and the in-process chain call; it decides per
message whether it is emitted downstream, routed late, or dead-lettered, and never raises for a
bad message.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from schemas.results import ModelRef, Result, Score, StageLatency
from workers import codec
from workers.deadline import now_ms
from workers.envelope import Envelope
from workers.errors import BadSamples, BadShape, PoisonMessage
from workers.frames import decode_pcm
from workers.headers import StageTime
from workers.model import OnnxModel
from workers.pipeline import PipelineSpec
from workers.telemetry import NOOP, Telemetry

Kind = Literal["emit", "late", "dlq"]


@dataclass(slots=True)
class Outcome:
    """What became of one input envelope: `envelope` is the output for emit, the input otherwise."""

    kind: Kind
    envelope: Envelope
    reason: str = ""
    detail: str = ""


class Stage:
    """Decode each message, run the stage's model on the batch, encode each output."""

    name: ClassVar[str]

    def __init__(self, pipeline: PipelineSpec, model: OnnxModel) -> None:
        self.pipeline = pipeline
        self.spec = pipeline.stages[self.name]  # type: ignore[index]
        self.model = model
        self.input_name = model.input_names[0]

    def decode(self, env: Envelope) -> np.ndarray:
        """One message's model input with a leading batch axis of 1; raises PoisonMessage."""
        array = codec.decode_tensor(env.payload, env.content_type)
        want = self.model.input_shape(self.input_name)[1:]
        if (
            array.ndim != len(want) + 1
            or array.shape[0] != 1
            or any(w is not None and w != a for w, a in zip(want, array.shape[1:], strict=True))
        ):
            raise BadShape(f"tensor shape {array.shape} does not fit model input (1, {want})")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise BadSamples("tensor has NaN/Inf values")
        return array

    def encode(self, env: Envelope, row: dict[str, np.ndarray], timing: StageTime) -> Envelope:
        """The downstream envelope for one output row (each array keeps a batch axis of 1)."""
        payload, content_type = codec.encode_tensor(row[self.model.output_names[0]])
        return env.forward(payload, content_type, timing)

    def process(self, batch: list[Envelope], telemetry: Telemetry = NOOP) -> list[Outcome]:
        """Outcomes aligned with `batch`: expired → late, undecodable → dlq, the rest run as one batch."""
        outcomes: list[Outcome | None] = [None] * len(batch)
        ready: list[tuple[int, np.ndarray]] = []
        now = now_ms()
        with telemetry.phase("decode", batch):
            for i, env in enumerate(batch):
                if env.deadline.expired(now):
                    over = -env.deadline.remaining_ms(now)
                    detail = f"deadline passed {over:.1f} ms before {self.name}"
                    outcomes[i] = Outcome("late", env, "expired", detail)
                    continue
                try:
                    ready.append((i, self.decode(env)))
                except PoisonMessage as exc:
                    outcomes[i] = Outcome("dlq", env, exc.reason, exc.detail)
        compute_ms = 0.0
        if ready:
            members = [batch[i] for i, _ in ready]
            started = time.perf_counter()
            with telemetry.phase("infer", members, batch_size=len(ready), model=self.model.identity):
                rows = self._run([a for _, a in ready])
            compute_ms = (time.perf_counter() - started) * 1000.0
            with telemetry.phase("encode", members):
                for (i, _), row in zip(ready, rows, strict=True):
                    env = batch[i]
                    timing = StageTime(self.name, env.queue_ms(), compute_ms)
                    outcomes[i] = Outcome("emit", self.encode(env, row, timing))
        done = [o for o in outcomes if o is not None]
        telemetry.computed(batch, done, compute_ms)
        return done

    def _run(self, arrays: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        stacked = np.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]
        out = self.model.run({self.input_name: stacked})
        return [{k: v[i : i + 1] for k, v in out.items()} for i in range(len(arrays))]


class PreprocessStage(Stage):
    """PCM frame → log-mel features (an ONNX graph)."""

    name = "preprocess"

    def decode(self, env: Envelope) -> np.ndarray:
        return decode_pcm(env.payload, env.content_type, self.pipeline.frame)[None, :]


class InferStage(Stage):
    """Features → class logits with the serving model variant; stamps `ontime-model`."""

    name = "infer"

    def encode(self, env: Envelope, row: dict[str, np.ndarray], timing: StageTime) -> Envelope:
        payload, content_type = codec.encode_tensor(row[self.model.output_names[0]])
        return env.forward(payload, content_type, timing, model=self.model.identity)


class PostprocessStage(Stage):
    """Logits → calibrated probabilities, top-k and labels (an ONNX graph) → JSON result."""

    name = "postprocess"

    def encode(self, env: Envelope, row: dict[str, np.ndarray], timing: StageTime) -> Envelope:
        labels = self.model.card.labels
        top_index = row["top_index"][0]
        top_prob = row["top_prob"][0]
        top = [
            Score(label=labels[int(i)], score=float(np.clip(p, 0.0, 1.0)))
            for i, p in zip(top_index, top_prob, strict=True)
        ]
        name, version, sha = (env.model or "unknown:0:" + "0" * 64).split(":", 2)
        completed = int(now_ms())
        status = env.status if env.status in ("ok", "degraded") else "ok"
        result = Result(
            id=env.id,
            pipeline=self.pipeline.name,
            device=env.key.decode("utf-8", errors="replace") if env.key else None,
            label=top[0].label,
            score=top[0].score,
            top=top[: self.pipeline.top_k],
            status=status,
            model=ModelRef(name=name, version=version, sha256=sha),
            captured_ms=env.captured_ms,
            deadline_ms=int(env.deadline.at_ms),
            completed_ms=completed,
            stages=[
                StageLatency(stage=t.stage, queue_ms=t.queue_ms, compute_ms=t.compute_ms)
                for t in [*env.stage_times, timing]
            ],
        )
        payload = json.dumps(result.model_dump(mode="json"), separators=(",", ":")).encode()
        return env.forward(payload, codec.JSON_MIME, timing)


STAGES: dict[str, type[Stage]] = {s.name: s for s in (PreprocessStage, InferStage, PostprocessStage)}


def build_stage(pipeline: PipelineSpec, name: str) -> Stage:
    """The stage `name` of `pipeline` with its serving model loaded (checksum verified)."""
    spec = pipeline.stages[name]  # type: ignore[index]
    return STAGES[name](pipeline, OnnxModel(spec.model, threads=spec.threads))
