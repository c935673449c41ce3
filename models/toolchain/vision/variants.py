"""Measure the vision variants in a models dir and write their cards (shared by build and evaluate).

Every variant is evaluated through onnxruntime on the file that is committed, not through torch,
so the card describes exactly what workers will load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.toolchain import cards, latency, stats
from models.toolchain.vision.data import LABELS
from schemas.card import Interval, LatencyStat, Lineage, ModelCard

VERSION = "1.0.0"
INPUT, OUTPUT = "image", "logits"
# INT8 may serve only if it is faster at most batch sizes and within the accuracy target.
INT8_MAX_DROP_POINTS = 0.5
# "Faster" means at least 5 % lower p50: smaller gaps are within this shared machine's noise.
SPEED_MARGIN = 0.95

Log = Callable[[str], None]


@dataclass
class Variant:
    """One artifact to measure: its directory name, lineage and the notes the build wants kept."""

    name: str
    lineage: Lineage
    notes: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)


def onnx_accuracy(
    model_path: Path, images: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], batch: int = 500
) -> Interval:
    session = latency.open_session(model_path, threads=1)
    predicted = np.concatenate(
        [
            session.run([OUTPUT], {INPUT: images[i : i + batch]})[0].argmax(axis=1)
            for i in range(0, len(images), batch)
        ]
    )
    return stats.accuracy(predicted, labels)


def _faster(candidate: list[LatencyStat], baseline: list[LatencyStat]) -> tuple[bool, str]:
    """Whether `candidate` is clearly faster at most batch sizes, and a per-batch comparison."""
    base = {s.batch: s.p50_ms for s in baseline}
    wins, parts = 0, []
    for stat in candidate:
        ref = base[stat.batch]
        wins += stat.p50_ms < SPEED_MARGIN * ref
        parts.append(f"batch {stat.batch}: {ref:.3f} → {stat.p50_ms:.3f} ms ({ref / stat.p50_ms:.2f}×)")
    return wins * 2 > len(candidate), "; ".join(parts)


def measure(
    out_dir: Path,
    variants: list[Variant],
    eval_sets: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]],
    latency_inputs: npt.NDArray[np.float32],
    log: Log = print,
) -> dict[str, ModelCard]:
    """Accuracy on every set, latency per batch, serving choice; writes every card.json."""
    paths = {variant.name: out_dir / variant.name / "model.onnx" for variant in variants}
    accuracy = {
        name: {key: onnx_accuracy(path, x, y) for key, (x, y) in eval_sets.items()}
        for name, path in paths.items()
    }
    timing = latency.compare_latency(paths, {INPUT: latency_inputs})
    for variant in variants:
        summary = ", ".join(f"{k} {v.value:.2%}" for k, v in accuracy[variant.name].items())
        p50 = " / ".join(f"{s.p50_ms:.3f}" for s in timing[variant.name])
        log(f"  {variant.name}: {summary}; p50 ms at batch 1/8/32: {p50}")

    serving = _serving(variants, accuracy, timing)
    result = {}
    for variant in variants:
        parent = variant.lineage.parent
        notes = list(variant.notes)
        if parent in timing and variant.lineage.quantization:
            faster, detail = _faster(timing[variant.name], timing[parent])
            verdict = "faster" if faster else "SLOWER"
            notes.append(f"INT8 is {verdict} than its FP32 parent `{parent}` (p50 {detail})")
        card = cards.assemble_card(
            out_dir / variant.name / "model.onnx",
            name=f"vision-{variant.name}",
            version=VERSION,
            labels=LABELS,
            accuracy=accuracy[variant.name],
            parent_accuracy=accuracy.get(parent or ""),
            latency=timing[variant.name],
            lineage=variant.lineage,
            notes=notes,
            serving=serving.get(variant.name, "not served"),
            preprocessing="float32 [N,1,28,28] grey pixels / 255 (Fashion-MNIST layout)",
            **variant.extra,
        )
        cards.write_card(card, out_dir / variant.name)
        result[variant.name] = card
    return result


def _serving(
    variants: list[Variant], accuracy: dict[str, dict[str, Interval]], timing: dict[str, list[LatencyStat]]
) -> dict[str, str]:
    """Per FP32/INT8 pair keep the faster one (INT8 only within its accuracy target)."""
    roles = {"student": "primary", "student-pruned": "fallback (degraded mode)"}
    chosen: dict[str, str] = {}
    for fp32, role in roles.items():
        int8 = f"{fp32}-int8"
        if fp32 not in timing:
            continue
        pick = fp32
        if int8 in timing:
            faster, _ = _faster(timing[int8], timing[fp32])
            drops = [stats.drop_points(accuracy[fp32][key], accuracy[int8][key]) for key in accuracy[fp32]]
            if faster and max(drops) <= INT8_MAX_DROP_POINTS:
                pick = int8
            chosen[int8 if pick == fp32 else fp32] = f"not served: `{pick}` is chosen for {role}"
        chosen[pick] = role
    for variant in variants:
        if variant.name.startswith("teacher"):
            chosen[variant.name] = "reference only (teacher)"
    return chosen
