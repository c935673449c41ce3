"""Drift of live traffic from a model's training data: PSI per feature group, as Prometheus gauges.

For every stage whose model card carries a `reference` block (schemas/drift.py), `DriftMonitor`
keeps a sliding window of the frames the stage answered and exports, per group, the window's PSI
against the reference (`ontime_drift_score`) beside the card's threshold (`ontime_drift_threshold`).
It reads the batch from the `computed` hook, so the stage code knows nothing of it: inputs are
decoded again from the envelopes (zero-copy for tensors; the pipeline's frame decoder for raw
device frames) and outputs from the emitted envelopes, only those the primary model answered.
Scores are refreshed when a block of the window closes, not per batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from schemas.card import ModelCard
from workers.config.spec import MODELS_DIR, PipelineSpec
from workers.config.versions import version_dir
from workers.messages import codec
from workers.messages.frames import load_decoder
from workers.telemetry.drift_stats import DriftWindow
from workers.telemetry.hooks import Telemetry
from workers.telemetry.logs import event
from workers.telemetry.metrics import stage_of

if TYPE_CHECKING:
    from workers.messages.envelope import Envelope
    from workers.messages.outcome import Outcome

log = logging.getLogger("ontime.drift")

Decode = Callable[["Envelope"], np.ndarray]


FLUSH_FRAMES = 16
"""Decoded frames wait until this many have gathered, so small batches share one numpy pass."""


def decode_tensors(payloads: list[tuple[bytes | None, str]]) -> np.ndarray:
    """Stack tensor payloads of one content type as one array: a join and one view, no per-row array."""
    first = codec.decode_tensor(*payloads[0])  # validates dtype, shape and size
    if len(payloads) == 1:
        return first
    if any(ct != payloads[0][1] or p is None or len(p) != first.nbytes for p, ct in payloads):
        return np.concatenate([codec.decode_tensor(p, ct) for p, ct in payloads])
    joined = b"".join(p for p, _ in payloads if p is not None)
    return np.frombuffer(joined, dtype=first.dtype).reshape(len(payloads) * first.shape[0], *first.shape[1:])


class StageDrift:
    """One stage's window: how to read its inputs back, whose outputs count, the window itself."""

    def __init__(self, card: ModelCard, decode: Decode | None, window_frames: int | None = None) -> None:
        assert card.reference is not None
        self.card = card
        self.identity = f"{card.name}:{card.version}:{card.sha256}"
        self.decode = decode  # None: the input is a tensor payload
        self.window = DriftWindow(card.reference.groups, window_frames or card.reference.window_frames)
        self.wants = {g.tensor for g in card.reference.groups.values()}
        self.pending: dict[str, list[np.ndarray]] = {"input": [], "output": []}
        self.pending_frames = 0
        self.lock = threading.Lock()

    def add(self, envs: Sequence[Envelope], outcomes: Sequence[Outcome]) -> bool:
        """Add the answered members of a batch; True when a block closed (scores are due)."""
        emitted = [(env, o.envelope) for env, o in zip(envs, outcomes, strict=False) if o.kind == "emit"]
        if not emitted:
            return False
        if "input" in self.wants:
            if self.decode is None:
                self.pending["input"].append(
                    decode_tensors([(e.payload, e.content_type) for e, _ in emitted])
                )
            else:
                self.pending["input"].append(np.stack([self.decode(e) for e, _ in emitted]))
        if "output" in self.wants:
            mine = [(out.payload, out.content_type) for _, out in emitted if out.model == self.identity]
            if mine:
                self.pending["output"].append(decode_tensors(mine))
        self.pending_frames += len(emitted)
        if self.pending_frames < FLUSH_FRAMES:
            return False
        tensors = {k: (np.concatenate(v) if v else None) for k, v in self.pending.items()}
        self.pending = {"input": [], "output": []}
        self.pending_frames = 0
        with self.lock:
            return self.window.add(tensors)

    def scores(self) -> dict[str, float]:
        with self.lock:
            return self.window.scores()


class DriftMonitor(Telemetry):
    """`ontime_drift_*` gauges for the stages of one worker whose cards hold a drift reference."""

    def __init__(
        self,
        pipeline: PipelineSpec,
        stages: Sequence[str],
        registry: CollectorRegistry,
        *,
        models_dir: Path = MODELS_DIR,
        window_frames: int | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.stages = list(stages)
        self.models_dir = models_dir
        self.window_frames = window_frames
        self.watch: dict[str, StageDrift] = {}
        self._failed: set[str] = set()
        for stage in stages:
            spec = pipeline.stages[stage]  # type: ignore[index]
            try:
                card = ModelCard.load(version_dir(spec.model, models_dir))
            except (OSError, ValueError) as exc:  # the stage itself refuses a bad card, with the reason
                event(log, "drift-off", logging.WARNING, stage=stage, error=repr(exc))
                continue
            if card.reference is not None:
                self.watch[stage] = StageDrift(card, self._decoder(stage), window_frames)
        labels = ("pipeline", "stage", "group")
        self.score = Gauge(
            "ontime_drift_score",
            "PSI of the live window against the model card's training reference, per feature group",
            labels,
            registry=registry,
        )
        self.threshold = Gauge(
            "ontime_drift_threshold",
            "PSI above which the group counts as drifted (from the model card)",
            labels,
            registry=registry,
        )
        self.frames = Gauge(
            "ontime_drift_window_frames",
            "Frames in the drift window; the score is NaN until half the window is filled",
            ("pipeline", "stage"),
            registry=registry,
        )
        for stage, watch in self.watch.items():
            assert watch.card.reference is not None
            for group, ref in watch.card.reference.groups.items():
                self.threshold.labels(pipeline.name, stage, group).set(ref.threshold)
                self.score.labels(pipeline.name, stage, group).set(float("nan"))
            self.frames.labels(pipeline.name, stage).set(0)

    def model_changed(self, stage: str, ref: str, result: str, role: str = "serving") -> None:
        """A new serving version (a rollout, a promote): its own card's reference, a fresh window."""
        if result != "applied" or role != "serving" or stage not in self.stages:
            return
        old = self.watch.pop(stage, None)
        if old is not None and old.card.reference is not None:
            for group in old.card.reference.groups:
                self.score.labels(self.pipeline.name, stage, group).set(float("nan"))
        try:
            card = ModelCard.load(version_dir(ref, self.models_dir))
        except (OSError, ValueError) as exc:
            event(log, "drift-off", logging.WARNING, stage=stage, error=repr(exc))
            return
        if card.reference is None:
            event(log, "drift-off", logging.WARNING, stage=stage, error=f"{ref}: its card has no reference")
            return
        self.watch[stage] = StageDrift(card, self._decoder(stage), self.window_frames)
        self._failed.discard(stage)
        for group, ref_group in card.reference.groups.items():
            self.threshold.labels(self.pipeline.name, stage, group).set(ref_group.threshold)
            self.score.labels(self.pipeline.name, stage, group).set(float("nan"))
        self.frames.labels(self.pipeline.name, stage).set(0)

    def _decoder(self, stage: str) -> Decode | None:
        """Raw device frames go through the pipeline's frame decoder; None: tensor payloads."""
        if self.pipeline.input_topic(stage) == self.pipeline.topics.raw:
            frame = load_decoder(self.pipeline.frame)
            return lambda env: frame(env.payload, env.content_type)
        return None

    def computed(self, envs: Sequence[Envelope], outcomes: Sequence[Outcome], compute_ms: float) -> None:
        if not envs:
            return
        stage = stage_of(envs[0], self.stages)
        watch = self.watch.get(stage)
        if watch is None or stage in self._failed:
            return
        try:
            if watch.add(envs, outcomes):
                self.publish(stage)
        except Exception as exc:  # drift is advisory: it must never stop a stage
            self._failed.add(stage)
            event(log, "drift-off", logging.WARNING, stage=stage, error=repr(exc))

    def publish(self, stage: str) -> dict[str, float]:
        """Set the gauges of `stage` from its window now; returns the scores."""
        watch = self.watch[stage]
        scores = watch.scores()
        for group, value in scores.items():
            self.score.labels(self.pipeline.name, stage, group).set(value)
        self.frames.labels(self.pipeline.name, stage).set(max(watch.window.frames(g) for g in scores))
        return scores
