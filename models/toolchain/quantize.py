"""Post-training graph steps: pre-process, optimise, INT8 static QDQ quantization, FP16.

Each step reads one ONNX file and writes another, returning the written path, so a build can keep
every intermediate, measure it, and name it in the card's lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

Feed = Mapping[str, npt.NDArray[np.generic]]

# U8 activations with S8 weights is the fast pairing of onnxruntime's x86 kernels. Without VNNI
# (AVX2 only, as on this machine) the u8*s8 pair sums saturate int16 in the kernels, which cost a
# tiny test graph 25 % of its logit range; 7-bit weights (reduce_range) avoid it.
INT8_SCHEME = "static QDQ, per-channel symmetric S8 weights (7-bit range), U8 activations, MinMax calibration"


class FeedReader(CalibrationDataReader):  # type: ignore[misc]
    """Hands onnxruntime's calibrator one feed dict at a time from an iterable of batches."""

    def __init__(self, feeds: Iterable[Feed]) -> None:
        self._feeds: Iterator[Feed] = iter(feeds)

    def get_next(self) -> dict[str, npt.NDArray[np.generic]] | None:
        feed = next(self._feeds, None)
        return None if feed is None else dict(feed)


def batched(name: str, samples: npt.NDArray[np.generic], batch: int = 32) -> list[Feed]:
    """Calibration feeds: `samples` (real inputs, axis 0) cut into batches for input `name`."""
    return [{name: np.ascontiguousarray(samples[i : i + batch])} for i in range(0, len(samples), batch)]


def preprocess(src: Path, dst: Path) -> Path:
    """Shape inference + onnxruntime basic optimisation, the recommended input for quantization."""
    quant_pre_process(str(src), str(dst))
    return dst


def optimize(src: Path, dst: Path, level: str = "basic") -> Path:
    """Save onnxruntime's optimised graph (`basic` stays standard ONNX; `extended` adds ORT-only ops)."""
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return dst


def quantize_int8(
    src: Path,
    dst: Path,
    calibration: Iterable[Feed],
    per_channel: bool = True,
    reduce_range: bool = True,
    method: CalibrationMethod = CalibrationMethod.MinMax,
    exclude: Sequence[str] = (),
) -> Path:
    """INT8 static quantization in QDQ format, calibrated on real inputs (see `INT8_SCHEME`);
    nodes named in `exclude` stay float."""
    quantize_static(
        str(src),
        str(dst),
        FeedReader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
        nodes_to_exclude=list(exclude),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    return dst


def convert_fp16(src: Path, dst: Path) -> Path:
    """FP16 weights and activations, float32 input/output kept so callers need not change."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst
