"""Loading a model variant for serving: checksum first, then one onnxruntime session.

The file is read once, hashed, and the same bytes are handed to onnxruntime, so what runs is
exactly what was verified against its card.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from schemas.card import ModelCard
from workers.config.spec import MODELS_DIR, STAGE_ORDER, PipelineSpec
from workers.config.versions import split_ref, version_dir, versions_of
from workers.errors import ModelError


def variant_dir(ref: str, root: Path = MODELS_DIR) -> Path:
    """`acoustic/classifier` → <root>/acoustic/classifier (root: `settings.models_dir`, default models/);
    `acoustic/classifier@2.0.0` → its `versions/2.0.0/` when there is one (workers/config/versions.py)."""
    return version_dir(ref, root)


def load_verified(ref: str, root: Path = MODELS_DIR) -> tuple[ModelCard, bytes]:
    """Card and file bytes of `ref`; raises ModelError if missing, another version, or the sha256 differs."""
    directory = variant_dir(ref, root)
    try:
        card = ModelCard.load(directory)
        blob = (directory / card.file).read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"model {ref}: {exc.filename} not found") from None
    except ValueError as exc:
        raise ModelError(f"model {ref}: card.json is invalid: {exc}") from None
    pinned = split_ref(ref)[1]
    if pinned is not None and card.version != pinned:
        have = ", ".join(versions_of(ref, root)) or "none"
        raise ModelError(f"model {ref}: no version {pinned} on disk (versions: {have})")
    actual = hashlib.sha256(blob).hexdigest()
    if actual != card.sha256:
        raise ModelError(
            f"model {ref}: sha256 of {card.file} is {actual}, its card says {card.sha256}; refusing to load"
        )
    return card, blob


@dataclass(frozen=True, slots=True)
class Check:
    """One model a pipeline names, verified (or not) against its card."""

    stage: str
    role: str  # primary, fallback, gate
    ref: str
    ok: bool
    detail: str
    card: ModelCard | None = None


def check_models(pipeline: PipelineSpec, root: Path = MODELS_DIR) -> list[Check]:
    """One check per (stage, primary|fallback|gate) model the pipeline names, as workers would load them."""
    checks: list[Check] = []
    for name in STAGE_ORDER:
        spec = pipeline.stages[name]  # type: ignore[index]
        refs = [("primary", spec.model)] + ([("fallback", spec.fallback)] if spec.fallback else [])
        gate = getattr(spec, "gate", None)
        if gate is not None:
            refs.append(("gate", gate.model))
        for role, ref in refs:
            try:
                card, blob = load_verified(ref, root)
            except ModelError as exc:
                checks.append(Check(name, role, ref, False, str(exc)))
                continue
            detail = f"{card.name} {card.version} sha256 {card.sha256[:16]}… {len(blob):,} bytes"
            checks.append(Check(name, role, ref, True, detail, card))
    return checks


class OnnxModel:
    """One verified model variant and its onnxruntime session."""

    def __init__(self, ref: str, threads: int = 1, root: Path = MODELS_DIR) -> None:
        self.ref = ref
        self.card, blob = load_verified(ref, root)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"model {ref}: onnxruntime cannot load it: {exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._shapes: dict[str, tuple[int | None, ...]] = {}

    @property
    def identity(self) -> str:
        """`name:version:sha256`, carried in the `ontime-model` header."""
        return f"{self.card.name}:{self.card.version}:{self.card.sha256}"

    def input_shape(self, name: str | None = None) -> tuple[int | None, ...]:
        """Declared shape of an input, dynamic axes as None (asked per frame: read once)."""
        key = self.input_names[0] if name is None else name
        shape = self._shapes.get(key)
        if shape is None:
            spec = next(i for i in self.session.get_inputs() if i.name == key)
            shape = self._shapes[key] = tuple(d if isinstance(d, int) else None for d in spec.shape)
        return shape

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outputs, strict=True))
