"""`ontime models build vision`: Fashion-MNIST teacher → distilled student → pruned student → ONNX/INT8.

Steps: train a ~0.39 M-parameter CNN teacher on the 60 000 training images; distil a ~0.06 M student
from its logits (T = 4, α = 0.7); prune half of every student conv's channels (L1 ranking), rebuild
and fine-tune with distillation; export ONNX, let onnxruntime optimise the graph (Conv+BN folding),
quantize to INT8 static QDQ per-channel calibrated on 1024 training images; then measure every
variant on the 10 000 test images and write `models/vision/<variant>/{model.onnx,card.json}`.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.toolchain import latency, prune, quantize
from models.toolchain.export import export_onnx
from models.toolchain.vision import data, graphs, nets, train
from models.toolchain.vision.variants import INPUT, OUTPUT, SPEED_MARGIN, Variant, measure, onnx_accuracy
from schemas.card import Lineage, ModelCard

SEED = 20261124
TORCH_THREADS = 1
TEMPERATURE, ALPHA = 4.0, 0.7
GRAPHS = ("preprocess", "postprocess")


@dataclass(frozen=True)
class Plan:
    train_images: int
    test_images: int
    teacher_epochs: int
    student_epochs: int
    finetune_epochs: int
    keep_ratio: float
    calibration_images: int


FULL = Plan(60_000, 10_000, 4, 6, 3, 0.5, 1024)
QUICK = Plan(6_000, 2_000, 1, 1, 1, 0.5, 256)


def log(message: str) -> None:
    print(message, flush=True)


def _export_fp32(net: torch.nn.Module, work: Path, out_dir: Path, name: str) -> Path:
    """Export, then save onnxruntime's basic-level graph (BN folded into Conv) as the artifact."""
    raw = export_onnx(net, torch.zeros(1, 1, 28, 28), work / f"{name}.raw.onnx", INPUT, OUTPUT)
    target = out_dir / name / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    quantize.optimize(raw, target, level="basic")
    return raw


def _quantize(raw: Path, work: Path, out_dir: Path, name: str, calibration: np.ndarray) -> Path:
    pre = quantize.preprocess(raw, work / f"{name}.pre.onnx")
    target = out_dir / name / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    return quantize.quantize_int8(pre, target, quantize.batched(INPUT, calibration, 32))


def _fp16_note(student: Path, work: Path, test: tuple[np.ndarray, np.ndarray], inputs: np.ndarray) -> str:
    """FP16 is kept only where it helps; on this AVX2 CPU onnxruntime has few FP16 kernels."""
    fp16 = quantize.convert_fp16(student, work / "student-fp16.onnx")
    acc = onnx_accuracy(fp16, *test)
    timing = latency.compare_latency({"fp32": student, "fp16": fp16}, {INPUT: inputs})
    fp32_lat, fp16_lat = timing["fp32"], timing["fp16"]
    detail = "; ".join(
        f"batch {a.batch}: {a.p50_ms:.3f} → {b.p50_ms:.3f} ms"
        for a, b in zip(fp32_lat, fp16_lat, strict=True)
    )
    helps = sum(b.p50_ms < SPEED_MARGIN * a.p50_ms for a, b in zip(fp32_lat, fp16_lat, strict=True)) >= 2
    verdict = "faster" if helps else "not clearly faster, so not shipped"
    return (
        f"FP16 conversion measured: accuracy {acc.value:.2%}, {fp16.stat().st_size} bytes, "
        f"p50 FP32 → FP16 {detail} ({verdict})"
    )


def build(out_dir: Path, quick: bool = False) -> None:
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    train.seed_everything(SEED, TORCH_THREADS)
    if not data.available():
        raise SystemExit(f"Fashion-MNIST not found in {data.DATA_DIR}: apt-get install dataset-fashion-mnist")
    x_train, y_train = data.load("train")
    x_test, y_test = data.load("test")
    pick = np.random.default_rng(SEED).permutation(len(x_train))
    x_train, y_train = x_train[pick[: plan.train_images]], y_train[pick[: plan.train_images]]
    x_test, y_test = x_test[: plan.test_images], y_test[: plan.test_images]
    calibration = x_train[: plan.calibration_images]
    test_set = "test" if plan.test_images == 10_000 else f"test[:{plan.test_images}]"
    log(f"vision build: {asdict(plan)}, torch threads {TORCH_THREADS}")

    log("teacher: training")
    teacher = train.fit(nets.teacher(), x_train, y_train, plan.teacher_epochs, SEED, log=log)
    soft = train.logits(teacher, x_train)
    log("student: distilling")
    torch.manual_seed(SEED + 1)
    student = nets.student()
    train.fit(student, x_train, y_train, plan.student_epochs, SEED + 1, teacher_logits=soft, log=log)
    log(f"student-pruned: keeping {plan.keep_ratio:.0%} of channels, fine-tuning")
    example = torch.from_numpy(x_train[:8])
    pruned = prune.prune_sequential(copy.deepcopy(student), plan.keep_ratio, example, "l1", multiple_of=4)
    train.fit(pruned, x_train, y_train, plan.finetune_epochs, SEED + 2, lr=1e-3, teacher_logits=soft, log=log)
    sizes = {
        n: prune.parameter_count(m)
        for n, m in [("teacher", teacher), ("student", student), ("pruned", pruned)]
    }
    log(f"parameters: {sizes}; training took {time.perf_counter() - started:.0f} s")

    train_desc = f"{plan.train_images} Fashion-MNIST training images, seed {SEED}"
    distill = (
        f"logit distillation from `teacher`, T={TEMPERATURE}, alpha={ALPHA}, {plan.student_epochs} epochs"
    )
    calib = f"{plan.calibration_images} training images (first of the seeded shuffle)"
    int8 = quantize.INT8_SCHEME
    common: dict[str, object] = {
        "trained_on": train_desc,
        "evaluated_on": f"Fashion-MNIST {test_set} (t10k split)",
    }
    with tempfile.TemporaryDirectory(prefix="ontime-vision-") as tmp:
        work = Path(tmp)
        raws = {
            "teacher": _export_fp32(teacher, work, out_dir, "teacher"),
            "student": _export_fp32(student, work, out_dir, "student"),
            "student-pruned": _export_fp32(pruned, work, out_dir, "student-pruned"),
        }
        for name, raw in raws.items():
            _quantize(raw, work, out_dir, f"{name}-int8", calibration)
        fp16_note = _fp16_note(out_dir / "student" / "model.onnx", work, (x_test, y_test), x_test[:64])
        log(f"  {fp16_note}")

    graph = "onnxruntime basic graph optimisation (Conv+BN folded)"
    variants = [
        Variant(
            "teacher",
            Lineage(notes=f"{plan.teacher_epochs} epochs cross-entropy; {graph}"),
            extra=common,
        ),
        Variant(
            "teacher-int8", Lineage(parent="teacher", quantization=int8, calibration_set=calib), extra=common
        ),
        Variant(
            "student",
            Lineage(parent="teacher", teacher="teacher", distillation=distill, notes=graph),
            notes=[fp16_note],
            extra=common,
        ),
        Variant(
            "student-int8", Lineage(parent="student", quantization=int8, calibration_set=calib), extra=common
        ),
        Variant(
            "student-pruned",
            Lineage(
                parent="student",
                teacher="teacher",
                pruning_ratio=1 - plan.keep_ratio,
                notes=f"structured L1 channel pruning of every conv, rebuilt, "
                f"{plan.finetune_epochs} epochs distillation fine-tune; {graph}",
            ),
            extra=common,
        ),
        Variant(
            "student-pruned-int8",
            Lineage(parent="student-pruned", quantization=int8, calibration_set=calib),
            extra=common,
        ),
    ]
    log("measuring every variant (onnxruntime, 1 intra-op thread)")
    measure(out_dir, variants, {test_set: (x_test, y_test)}, x_test[:64], log=log)
    log("preprocess and postprocess graphs (hand-built ONNX)")
    graphs.write(out_dir)
    log(f"vision build done in {time.perf_counter() - started:.0f} s")


def evaluate(out_dir: Path) -> None:
    """Re-measure the committed variants on the full test split; lineage and notes are kept."""
    x_test, y_test = data.load("test")
    variants = []
    for card_path in sorted(out_dir.glob("*/card.json")):
        if card_path.parent.name in GRAPHS:
            continue  # no accuracy of their own: rewritten (same bytes) by graphs.write below
        card = ModelCard.load(card_path.parent)
        notes = [n for n in card.notes if not n.startswith("INT8 is ")]
        extra = {k: v for k, v in (card.model_extra or {}).items() if k not in ("serving", "preprocessing")}
        variants.append(Variant(card_path.parent.name, card.lineage, notes, extra))
    measure(out_dir, variants, {"test": (x_test, y_test)}, x_test[:64], log=log)
    graphs.write(out_dir)
