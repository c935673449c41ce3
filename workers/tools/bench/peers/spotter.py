"""The pipeline's three models, one frame at a time and no deadlines: what a peer computes per frame.

The peers run exactly the model variants the pipeline YAML names (checksums verified, loaded by
ontime's own `OnnxModel`) and decode frames with ontime's own decoder, so the benchmark compares
the streaming machinery around the models, not the maths.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from workers.config.spec import MODELS_DIR, STAGE_ORDER, PipelineSpec
from workers.messages.frames import load_decoder
from workers.stages.model import OnnxModel


def load_pipeline(path: Path) -> PipelineSpec:
    """The pipeline YAML as written by the benchmark (topics of its own run)."""
    return PipelineSpec.model_validate(yaml.safe_load(path.read_text()))


@dataclass(frozen=True, slots=True)
class PeerArgs:
    """Command line every peer takes: which pipeline file, which broker, which consumer group."""

    pipeline: Path
    bootstrap: str
    group: str
    models_dir: Path

    @classmethod
    def parse(cls, argv: list[str] | None, description: str) -> PeerArgs:
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--pipeline", type=Path, required=True, help="pipeline YAML (topics, models)")
        parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
        parser.add_argument("--group", required=True, help="consumer group id")
        parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="root of the model variants")
        ns = parser.parse_args(argv)
        return cls(ns.pipeline, ns.bootstrap, ns.group, ns.models_dir)


class Spotter:
    """preprocess → infer → postprocess models of a pipeline, run on one frame at a time."""

    def __init__(self, pipeline: PipelineSpec, models_dir: Path = MODELS_DIR) -> None:
        self.pipeline = pipeline
        self.models = [
            OnnxModel(pipeline.stages[s].model, threads=pipeline.stages[s].threads, root=models_dir)  # type: ignore[index]
            for s in STAGE_ORDER
        ]
        self.labels = self.models[-1].card.labels or []
        self.decode = load_decoder(pipeline.frame)

    def answer(self, payload: bytes | None, content_type: str) -> tuple[str, float]:
        """Top label and its probability; raises a PoisonMessage subclass for a bad frame."""
        x: np.ndarray = self.decode(payload, content_type)[None, ...]
        for model in self.models[:-1]:
            x = model.run({model.input_names[0]: x})[model.output_names[0]]
        post = self.models[-1]
        out = post.run({post.input_names[0]: x})
        index = int(out["top_index"][0][0])
        return self.labels[index], float(out["top_prob"][0][0])


def result(
    frame_id: str, device: str | None, captured_ms: str, label: str, score: float
) -> dict[str, object]:
    """The peer's JSON result: enough for the benchmark to judge it against the same deadline."""
    return {
        "id": frame_id,
        "device": device,
        "label": label,
        "score": score,
        "captured_ms": int(captured_ms) if captured_ms.lstrip("-").isdigit() else None,
        "completed_ms": int(time.time() * 1000),
    }


def encode(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
