"""Assemble a `ModelCard` from an ONNX file (identity, tensors, cost) plus measured numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from models.toolchain.latency import count_macs, count_parameters
from models.toolchain.stats import drop_points
from schemas.card import Interval, LatencyStat, Lineage, ModelCard, TensorSpec, sha256_of


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    shape: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        else:
            shape.append(dim.dim_param or None)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return TensorSpec(name=value.name, dtype=dtype, shape=shape)


def tensor_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs with numpy dtype names and shapes."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [_spec(v) for v in model.graph.output]


def assemble_card(
    model_path: Path,
    name: str,
    version: str,
    labels: Sequence[str] = (),
    accuracy: Mapping[str, Interval] | None = None,
    parent_accuracy: Mapping[str, Interval] | None = None,
    latency: Sequence[LatencyStat] = (),
    lineage: Lineage | None = None,
    notes: Sequence[str] = (),
    **extra: object,
) -> ModelCard:
    """Card of `model_path`: sha256, tensors, size, parameters, MACs, and what was measured.

    Drops vs parent are computed for every evaluation set both were measured on, in percentage
    points (positive = the variant is worse). Extra keyword arguments become extra card keys.
    """
    model = onnx.load(str(model_path))
    inputs, outputs = tensor_specs(model)
    accuracy = dict(accuracy or {})
    drops = {
        key: drop_points(parent_accuracy[key], value)
        for key, value in accuracy.items()
        if parent_accuracy and key in parent_accuracy
    }
    return ModelCard(
        name=name,
        version=version,
        sha256=sha256_of(model_path),
        file=model_path.name,
        inputs=inputs,
        outputs=outputs,
        labels=list(labels),
        parameters=count_parameters(model),
        macs=count_macs(model),
        file_bytes=model_path.stat().st_size,
        accuracy=accuracy,
        accuracy_drop_vs_parent=drops,
        latency=list(latency),
        lineage=lineage or Lineage(),
        notes=list(notes),
        **extra,
    )


def write_card(card: ModelCard, variant_dir: Path) -> Path:
    """Write `card.json` beside the model and return its path.

    A drift reference already in the card is kept when the model file is the same (same sha256):
    rebuilding one part must not drop what `ontime models reference` measured for it.
    """
    variant_dir.mkdir(parents=True, exist_ok=True)
    if card.reference is None and (variant_dir / "card.json").is_file():
        old = ModelCard.load(variant_dir)
        if old.sha256 == card.sha256:
            card.reference = old.reference
    card.save(variant_dir)
    return variant_dir / "card.json"
