"""The served ONNX chain run directly on a stream's windows, for tuning and quick checks.

Same three models, same files (sha256-verified) as the stage workers, one batch of windows at a
time; what comes out is the top-k labels and scores a `Result` would carry.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from workers.config.settings import OntimeSettings
from workers.stages.model import OnnxModel


class OfflineChain:
    """preprocess → infer → postprocess of a pipeline, in process."""

    def __init__(self, settings: OntimeSettings) -> None:
        stages = settings.pipeline.stages
        root = settings.models_dir
        self.features = OnnxModel(stages["preprocess"].model, root=root)
        self.classifier = OnnxModel(stages["infer"].model, root=root)
        self.post = OnnxModel(stages["postprocess"].model, root=root)
        self.labels = list(self.post.card.labels)

    def top(self, frames: npt.NDArray[np.int16], batch: int = 64) -> list[dict[str, float]]:
        """label → score (top-k) of each int16 frame."""
        out: list[dict[str, float]] = []
        for lo in range(0, len(frames), batch):
            x = frames[lo : lo + batch].astype(np.float32) / 32768.0
            feats = self.features.run({self.features.input_names[0]: x})[self.features.output_names[0]]
            logits = self.classifier.run({self.classifier.input_names[0]: feats})
            top = self.post.run({self.post.input_names[0]: logits[self.classifier.output_names[0]]})
            for idx, prob in zip(top["top_index"], top["top_prob"], strict=True):
                out.append({self.labels[int(i)]: float(p) for i, p in zip(idx, prob, strict=True)})
        return out
