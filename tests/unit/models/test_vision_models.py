"""The committed vision models: they load, match their cards, and still classify Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from models import MODELS_DIR
from models.toolchain.vision import data
from schemas.card import ModelCard, sha256_of

VISION = MODELS_DIR / "vision"
EXPECTED = {"teacher", "teacher-int8", "student", "student-int8", "student-pruned", "student-pruned-int8"}
GRAPHS = {"preprocess", "postprocess"}  # hand-built, tested in test_vision_graphs.py
VARIANTS = sorted(p.parent.name for p in VISION.glob("*/card.json") if p.parent.name not in GRAPHS)
# Generous: the full build measures 89–93 % on all 10 000 test images; a broken model is near 10 %.
ACCURACY_FLOOR = 0.80


def session(variant: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(VISION / variant / "model.onnx"), providers=["CPUExecutionProvider"])


def test_every_variant_is_committed_with_a_card() -> None:
    assert set(VARIANTS) == EXPECTED
    assert {p.parent.name for p in VISION.glob("*/card.json")} == EXPECTED | GRAPHS
    for variant in VARIANTS:
        assert (VISION / variant / "model.onnx").is_file()


@pytest.mark.parametrize("variant", VARIANTS)
def test_card_matches_the_file(variant: str) -> None:
    card = ModelCard.load(VISION / variant)
    assert card.sha256 == sha256_of(VISION / variant / card.file)
    assert card.file_bytes == (VISION / variant / card.file).stat().st_size
    assert card.labels == data.LABELS
    assert card.name == f"vision-{variant}"
    assert set(card.accuracy) == {"test"} and card.accuracy["test"].n == 10_000
    assert [s.batch for s in card.latency] == [1, 8, 32]


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_has_the_declared_tensors(variant: str) -> None:
    card = ModelCard.load(VISION / variant)
    sess = session(variant)
    declared_in = [(t.name, t.dtype, t.shape) for t in card.inputs]
    declared_out = [(t.name, t.dtype, t.shape) for t in card.outputs]
    assert declared_in == [("image", "float32", ["N", 1, 28, 28])]
    assert declared_out == [("logits", "float32", ["N", 10])]
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [
        ("image", "tensor(float)", ["N", 1, 28, 28])
    ]
    for batch in (1, 5):
        (logits,) = sess.run(["logits"], {"image": np.zeros((batch, 1, 28, 28), np.float32)})
        assert logits.shape == (batch, 10) and logits.dtype == np.float32


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.endswith("-int8")])
def test_int8_variants_are_qdq_quantized(variant: str) -> None:
    onnx = pytest.importorskip("onnx")
    ops = {node.op_type for node in onnx.load(str(VISION / variant / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_student_is_small_enough() -> None:
    for variant in ("student", "student-int8", "student-pruned", "student-pruned-int8"):
        parameters = ModelCard.load(VISION / variant).parameters
        assert parameters is not None and parameters < 200_000


@pytest.fixture(scope="module")
def first_test_images() -> tuple[np.ndarray, np.ndarray]:
    # No skip: CI installs the Debian package (.ci/system-deps); a missing input is a failure.
    assert data.available(), f"Debian package dataset-fashion-mnist is not installed ({data.DATA_DIR})"
    images, labels = data.load("test")
    return images[:1000], labels[:1000]


@pytest.mark.parametrize("variant", VARIANTS)
def test_accuracy_on_the_first_1000_test_images(
    variant: str, first_test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = first_test_images
    (logits,) = session(variant).run(["logits"], {"image": images})
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    assert accuracy >= ACCURACY_FLOOR, f"{variant}: {accuracy:.1%} on the first 1000 test images"
