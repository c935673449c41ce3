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


def build_postprocess(
    n_classes: int,
    temperature: float,
    k: int = 3,
    threshold: float = 0.0,
    n_keywords: int = 0,
    unknown: int = 0,
) -> onnx.ModelProto:
    """logits [N,C] -> probs = softmax(logits / T), top_index int64 [N,k], top_prob [N,k], with
    open-set rejection: a frame whose top-1 is a keyword (index < n_keywords) with probability
    below `threshold` is answered `unknown` first, scored 1 - p(best keyword); the keywords follow
    with their own probabilities. threshold 0 never rejects."""
    onehot = np.zeros((1, n_classes), np.float32)
    onehot[0, unknown] = 1.0
    inits = [
        numpy_helper.from_array(np.array(1.0 / temperature, dtype=np.float32), "inv_temperature"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "kw_start"),
        numpy_helper.from_array(np.array([max(1, n_keywords)], dtype=np.int64), "kw_end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "class_axis"),
        numpy_helper.from_array(np.array(n_keywords, dtype=np.int64), "n_keywords"),
        numpy_helper.from_array(np.array(threshold, dtype=np.float32), "threshold"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        numpy_helper.from_array(onehot, "unknown_onehot"),
    ]
    nodes = [
        helper.make_node("Mul", ["logits", "inv_temperature"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1),
        # best keyword probability and whether the top-1 is a keyword
        helper.make_node("Slice", ["probs", "kw_start", "kw_end", "class_axis"], ["kw_probs"]),
        helper.make_node("ReduceMax", ["kw_probs"], ["kw_best"], axes=[1], keepdims=1),
        helper.make_node("ArgMax", ["probs"], ["top1"], axis=1, keepdims=1),
        helper.make_node("Less", ["top1", "n_keywords"], ["top_is_keyword"]),
        helper.make_node("Less", ["kw_best", "threshold"], ["unsure"]),
        helper.make_node("And", ["top_is_keyword", "unsure"], ["rejected"]),
        helper.make_node("Cast", ["rejected"], ["rejected_f"], to=TensorProto.FLOAT),
        # decision scores: unknown's entry becomes 1 - p(best keyword) when rejected
        helper.make_node("Sub", ["one", "kw_best"], ["not_kw"]),
        helper.make_node("Sub", ["not_kw", "probs"], ["to_not_kw"]),
        helper.make_node("Mul", ["to_not_kw", "unknown_onehot"], ["unk_delta"]),
        helper.make_node("Mul", ["unk_delta", "rejected_f"], ["unk_shift"]),
        helper.make_node("Add", ["probs", "unk_shift"], ["decision"]),
        # ranking puts a rejected frame's unknown first whatever its score
        helper.make_node("Mul", ["unknown_onehot", "rejected_f"], ["rank_unit"]),
        helper.make_node("Mul", ["rank_unit", "two"], ["rank_boost"]),
        helper.make_node("Add", ["decision", "rank_boost"], ["rank"]),
        helper.make_node("TopK", ["rank", "k"], ["top_rank", "top_index"], axis=-1, largest=1, sorted=1),
        helper.make_node("GatherElements", ["decision", "top_index"], ["top_prob"], axis=1),
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
        f"softmax(logits / {temperature}) and top-{k}; temperature fitted by NLL on calibration voices; "
        f"a keyword top-1 below {threshold} is answered as class {unknown} (open-set rejection)"
    )
    onnx.checker.check_model(model, full_check=True)
    return model
