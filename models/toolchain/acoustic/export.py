"""Torch -> ONNX (features [N,40,101] -> logits [N,C], dynamic batch) and the postprocess graph."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from .features import N_FRAMES, N_MELS

OPSET = 17


def export_classifier(model: nn.Module, path: Path, doc: str, output: str = "logits") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    example = torch.zeros(2, N_MELS, N_FRAMES)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["features"],
        output_names=[output],
        dynamic_axes={"features": {0: "N"}, output: {0: "N"}},
        opset_version=OPSET,
        dynamo=False,
    )
    m = onnx.load(str(path))
    m.doc_string = doc
    m.producer_name = "ontime-toolchain"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return path


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the negative log-likelihood of softmax(logits / T) (grid + refine)."""

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(labels)), labels].mean())

    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 200))
    best = float(grid[np.argmin([nll(t) for t in grid])])
    fine = np.linspace(best * 0.97, best * 1.03, 61)
    return round(float(fine[np.argmin([nll(t) for t in fine])]), 4)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += float(sel.mean()) * abs(float(correct[sel].mean()) - float(conf[sel].mean()))
    return round(ece, 4)


def build_postprocess(n_classes: int, temperature: float, k: int = 3) -> onnx.ModelProto:
    """logits [N,C] -> probs = softmax(logits / T), top_index int64 [N,k], top_prob [N,k]."""
    inits = [
        numpy_helper.from_array(np.array(1.0 / temperature, dtype=np.float32), "inv_temperature"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
    ]
    nodes = [
        helper.make_node("Mul", ["logits", "inv_temperature"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1),
        helper.make_node("TopK", ["probs", "k"], ["top_prob", "top_index"], axis=-1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes,
        "acoustic_postprocess",
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes]),
            helper.make_tensor_value_info("top_index", TensorProto.INT64, ["N", k]),
            helper.make_tensor_value_info("top_prob", TensorProto.FLOAT, ["N", k]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ontime-toolchain"
    )
    model.doc_string = (
        f"softmax(logits / {temperature}) and top-{k}; temperature fitted by NLL on calibration voices"
    )
    onnx.checker.check_model(model, full_check=True)
    return model
