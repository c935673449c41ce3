"""The vision pipeline's two hand-built ONNX graphs: pixel scaling (preprocess) and top-k (postprocess).

Every stage serves a checksummed model, so the normalisation the classifiers were trained with
(`pixels / 255`, see data.py) and the softmax + top-k live in versioned graphs, not in worker
code. Built with onnx helpers only (no torch), byte-for-byte reproducible: IR version and opset
are pinned, so `python -m models.toolchain.vision.graphs` rewrites the same sha256.

- `preprocess`: pixels uint8 [N,1,28,28] → image float32 [N,1,28,28] = pixels / 255
- `postprocess`: logits float32 [N,10] → probs = softmax(logits), top_index int64 [N,3], top_prob [N,3]

No temperature: Fashion-MNIST has only a training and a test split, both already used, so
there is no held-out set to calibrate on; the probabilities are the served student's as is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import MODELS_DIR
from models.toolchain import cards, latency
from models.toolchain.vision.data import LABELS
from schemas.card import Lineage

OPSET = 17
IR_VERSION = 8  # pinned, so the bytes (and the sha256) do not follow the installed onnx
VERSION = "1.0.0"
SIDE = 28
TOP_K = 3
SERVED = "student-int8"  # the classifier whose logits the postprocess graph reads (pipeline.yaml)


def _model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ontime-toolchain"
    )
    model.ir_version = IR_VERSION
    model.doc_string = doc
    onnx.checker.check_model(model, full_check=True)
    return model


def preprocess_graph() -> onnx.ModelProto:
    """uint8 pixels → float32 in [0, 1], exactly as the classifiers were trained (divide by 255)."""
    shape = ["N", 1, SIDE, SIDE]
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["as_float", "scale"], ["image"]),
        ],
        "vision_preprocess",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale")],
    )
    return _model(graph, "8-bit gray pixels [N,1,28,28] -> float32 pixels / 255 (Fashion-MNIST layout)")


def postprocess_graph(n_classes: int = len(LABELS), k: int = TOP_K) -> onnx.ModelProto:
    """logits → probs = softmax(logits), top-k indices and probabilities."""
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
            helper.make_node("TopK", ["probs", "k"], ["top_prob", "top_index"], axis=-1, largest=1, sorted=1),
        ],
        "vision_postprocess",
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes]),
            helper.make_tensor_value_info("top_index", TensorProto.INT64, ["N", k]),
            helper.make_tensor_value_info("top_prob", TensorProto.FLOAT, ["N", k]),
        ],
        initializer=[numpy_helper.from_array(np.array([k], dtype=np.int64), "k")],
    )
    return _model(graph, f"softmax(logits) and top-{k}; no temperature (no held-out calibration split)")


def write(out_dir: Path = MODELS_DIR / "vision") -> dict[str, Path]:
    """Write both graphs and their cards (sha256, tensors, latency) under `out_dir`."""
    rng = np.random.default_rng(0)
    built = {
        "preprocess": (
            preprocess_graph(),
            {"pixels": rng.integers(0, 256, (64, 1, SIDE, SIDE), dtype=np.uint8)},
            [],
            "hand-built ONNX graph, no training: Cast + Div by 255",
        ),
        "postprocess": (
            postprocess_graph(),
            {"logits": rng.normal(0, 4, (64, len(LABELS))).astype(np.float32)},
            LABELS,
            f"hand-built ONNX graph, no training: Softmax + TopK(k={TOP_K}) over `{SERVED}` logits",
        ),
    }
    written = {}
    for name, (model, inputs, labels, notes) in built.items():
        path = out_dir / name / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        card = cards.assemble_card(
            path,
            name=f"vision-{name}",
            version=VERSION,
            labels=labels,
            latency=latency.measure_latency(path, inputs),
            lineage=Lineage(parent=f"vision/{SERVED}" if name == "postprocess" else None, notes=notes),
            serving=name,
        )
        cards.write_card(card, path.parent)
        written[name] = path
    return written


if __name__ == "__main__":
    for name, path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else MODELS_DIR / "vision").items():
        print(f"{name}: {path}")
