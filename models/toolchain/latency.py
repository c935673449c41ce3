"""What a model costs on this machine: onnxruntime latency per batch size, parameters and MACs.

Latency is measured with a fixed number of intra-op threads (stated in every `LatencyStat`), after a
warm-up, as the median over rounds of p50/p99, because the machine is shared and noisy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import numpy_helper, shape_inference

from schemas.card import LatencyStat

BATCHES: tuple[int, ...] = (1, 8, 32)
THREADS = 1


def open_session(model_path: Path, threads: int = THREADS) -> ort.InferenceSession:
    """A CPU session pinned to `threads` intra-op threads and one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _rows(array: npt.NDArray[np.generic], batch: int) -> npt.NDArray[np.generic]:
    """The first `batch` rows of real inputs, cycling them when fewer are given."""
    index = np.arange(batch) % array.shape[0]
    return np.ascontiguousarray(array[index])


def compare_latency(
    models: Mapping[str, Path],
    inputs: Mapping[str, npt.NDArray[np.generic]],
    batches: Sequence[int] = BATCHES,
    threads: int = THREADS,
    warmup: int = 10,
    runs: int = 50,
    rounds: int = 5,
) -> dict[str, list[LatencyStat]]:
    """p50/p99 ms of one `session.run` per model and batch size; `inputs` are real samples (axis 0).

    Rounds alternate between the models, so a noisy neighbour slows them all alike; each figure is
    the median over rounds of that round's percentile.
    """
    sessions = {name: open_session(path, threads) for name, path in models.items()}
    stats: dict[str, list[LatencyStat]] = {name: [] for name in models}
    for batch in batches:
        feed = {name: _rows(array, batch) for name, array in inputs.items()}
        p50s: dict[str, list[float]] = {name: [] for name in models}
        p99s: dict[str, list[float]] = {name: [] for name in models}
        for session in sessions.values():
            for _ in range(warmup):
                session.run(None, feed)
        for _ in range(rounds):
            for name, session in sessions.items():
                times = np.empty(runs)
                for i in range(runs):
                    start = time.perf_counter()
                    session.run(None, feed)
                    times[i] = time.perf_counter() - start
                p50s[name].append(float(np.percentile(times, 50)) * 1e3)
                p99s[name].append(float(np.percentile(times, 99)) * 1e3)
        for name in models:
            stats[name].append(
                LatencyStat(
                    batch=batch,
                    p50_ms=round(float(np.median(p50s[name])), 4),
                    p99_ms=round(float(np.median(p99s[name])), 4),
                    threads=threads,
                )
            )
    return stats


def measure_latency(
    model_path: Path,
    inputs: Mapping[str, npt.NDArray[np.generic]],
    batches: Sequence[int] = BATCHES,
    threads: int = THREADS,
    warmup: int = 10,
    runs: int = 50,
    rounds: int = 5,
) -> list[LatencyStat]:
    """`compare_latency` of a single model."""
    return compare_latency({"model": model_path}, inputs, batches, threads, warmup, runs, rounds)["model"]


# Initializer inputs of these ops are quantization metadata, not learned parameters.
_QDQ_META = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}
_PARAM_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.INT32,
}


def count_parameters(model: onnx.ModelProto) -> int:
    """Learned numbers in the graph: weight/bias initializers, not shapes or quantization scales."""
    meta: set[str] = set()
    for node in model.graph.node:
        for index in _QDQ_META.get(node.op_type, ()):
            if index < len(node.input):
                meta.add(node.input[index])
    total = 0
    for init in model.graph.initializer:
        if init.name in meta or init.data_type not in _PARAM_TYPES or len(init.dims) == 0:
            continue
        total += int(np.prod(init.dims))
    return total


def _with_batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of the graph with every symbolic input axis fixed to 1, so shapes infer to numbers."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    return shape_inference.infer_shapes(fixed, data_prop=True)


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of one sample through Conv, Gemm and MatMul nodes (others are cheap)."""
    inferred = _with_batch_one(model)
    shapes: dict[str, list[int]] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    for node in inferred.graph.node:
        if node.op_type == "Constant" and node.attribute:
            shapes[node.output[0]] = list(numpy_helper.to_array(node.attribute[0].t).shape)

    macs = 0
    for node in inferred.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if node.op_type in ("Conv", "FusedConv", "ConvInteger"):
            weight = shapes.get(node.input[1])
            if out and weight:
                # weight [Cout, Cin/groups, k...]: each output element costs Cin/groups * prod(k)
                macs += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger"):
            a = shapes.get(node.input[0])
            if out and a:
                trans_a = any(att.name == "transA" and att.i == 1 for att in node.attribute)
                inner = a[-2] if trans_a and len(a) >= 2 else a[-1]
                macs += int(np.prod(out)) * inner
    return macs


def graph_cost(model_path: Path) -> tuple[int, int]:
    """(parameters, MACs per sample) of an ONNX file."""
    model = onnx.load(str(model_path))
    return count_parameters(model), count_macs(model)
