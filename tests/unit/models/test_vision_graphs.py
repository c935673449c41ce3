"""The vision preprocess/postprocess graphs: reproducible bytes, the training normalisation, and
the whole served chain (PNG → decoder → preprocess → student-int8 → postprocess) on real images."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from models import MODELS_DIR
from models.toolchain.vision import data, graphs
from pipelines.vision.fashion_mnist import camera_frames
from schemas.card import ModelCard
from workers.config.settings import load_settings
from workers.messages.frames import load_decoder
from workers.stages.model import OnnxModel

VISION = MODELS_DIR / "vision"
# The served student measures 91.1 % on all 10 000 test images; a broken chain is near 10 %.
CHAIN_ACCURACY_FLOOR = 0.85


@pytest.mark.parametrize(
    ("name", "build"), [("preprocess", graphs.preprocess_graph), ("postprocess", graphs.postprocess_graph)]
)
def test_toolchain_reproduces_the_committed_graph_byte_for_byte(name: str, build: object) -> None:
    assert callable(build)
    rebuilt = hashlib.sha256(build().SerializeToString()).hexdigest()
    card = ModelCard.load(VISION / name)
    assert rebuilt == card.sha256 == hashlib.sha256((VISION / name / "model.onnx").read_bytes()).hexdigest()
    assert getattr(card, "serving", None) == name


def test_preprocess_is_the_training_normalisation() -> None:
    pixels, _ = data.load_pixels("test")
    images, _ = data.load("test")
    out = OnnxModel("vision/preprocess").run({"pixels": pixels[:256, None]})["image"]
    assert out.dtype == np.float32 and out.shape == (256, 1, 28, 28)
    np.testing.assert_array_equal(out, images[:256])


def test_postprocess_orders_the_top_k_and_names_labels_from_its_card() -> None:
    model = OnnxModel("vision/postprocess")
    assert model.card.labels == data.LABELS
    logits = np.zeros((2, 10), np.float32)
    logits[0, [7, 2, 5]] = [5.0, 4.0, 3.0]
    logits[1, 9] = 1.0
    out = model.run({"logits": logits})
    assert out["top_index"].tolist()[0] == [7, 2, 5]
    assert out["top_index"][1, 0] == 9
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, rtol=1e-6)
    assert (np.diff(out["top_prob"], axis=1) <= 0).all()


def test_served_chain_classifies_real_test_images_from_their_png() -> None:
    spec = load_settings("vision").pipeline
    decode = load_decoder(spec.frame)
    frames = camera_frames()[:1000]
    pixels = np.stack([decode(f.payload, spec.frame.content_type) for f in frames])
    chain = [OnnxModel(spec.stages[s].model) for s in ("preprocess", "infer", "postprocess")]
    image = chain[0].run({"pixels": pixels})["image"]
    logits = chain[1].run({"image": image})["logits"]
    top = chain[2].run({"logits": logits})["top_index"][:, 0]
    predicted = [chain[2].card.labels[int(i)] for i in top]
    accuracy = np.mean([p == f.label for p, f in zip(predicted, frames, strict=True)])
    assert accuracy >= CHAIN_ACCURACY_FLOOR, f"{accuracy:.1%} on the first 1000 test images"
