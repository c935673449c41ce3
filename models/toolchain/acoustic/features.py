"""The reference log-mel front end as a pure ONNX graph (opset 17 STFT + MelWeightMatrix).

Training computes its features by running this very graph in onnxruntime (committed as
`acoustic/features-stft`), so the committed classifiers learned from exactly these numbers. The
preprocess stage serves the faster GEMM formulation (`features_gemm.py`, `acoustic/features`),
checked against this graph within a stated tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipelines.acoustic.logmel import (
    CLIP_SAMPLES,
    F_MAX,
    F_MIN,
    HOP,
    LOG_FLOOR,
    N_FFT,
    N_FRAMES,
    N_MELS,
    SAMPLE_RATE,
    WIN_LENGTH,
    hann_window,
)

__all__ = [
    "CLIP_SAMPLES",
    "F_MAX",
    "F_MIN",
    "HOP",
    "LOG_FLOOR",
    "N_FFT",
    "N_FRAMES",
    "N_MELS",
    "OPSET",
    "SAMPLE_RATE",
    "WIN_LENGTH",
    "FeatureExtractor",
    "build_features_model",
    "write_features_model",
]

OPSET = 17


def _window() -> np.ndarray:
    """Periodic Hann of 25 ms, centred in the 512-point DFT frame."""
    return hann_window()


def build_features_model() -> onnx.ModelProto:
    """pcm float32 [N,16000] in [-1,1] -> features float32 [N,40,101] = log(mel power + 1e-6)."""
    c = numpy_helper.from_array
    inits = [
        c(np.array([0, N_FFT // 2, 0, N_FFT // 2], dtype=np.int64), "pads"),
        c(np.array(HOP, dtype=np.int64), "hop"),
        c(_window(), "window"),
        c(np.array(N_FFT, dtype=np.int64), "frame_length"),
        c(np.array([-1], dtype=np.int64), "axes_last"),
        c(np.array([0], dtype=np.int64), "idx0"),
        c(np.array([1], dtype=np.int64), "idx1"),
        c(np.array(N_MELS, dtype=np.int64), "n_mels"),
        c(np.array(N_FFT, dtype=np.int64), "dft_length"),
        c(np.array(SAMPLE_RATE, dtype=np.int64), "sample_rate"),
        c(np.array(F_MIN, dtype=np.float32), "f_min"),
        c(np.array(F_MAX, dtype=np.float32), "f_max"),
        c(np.array(LOG_FLOOR, dtype=np.float32), "log_floor"),
    ]
    nodes = [
        helper.make_node("Pad", ["pcm", "pads"], ["padded"], mode="constant"),
        helper.make_node("Unsqueeze", ["padded", "axes_last"], ["signal"]),
        # [N, 101, 257, 2]: real and imaginary parts of the one-sided spectrum.
        helper.make_node("STFT", ["signal", "hop", "window", "frame_length"], ["spec"], onesided=1),
        helper.make_node("Gather", ["spec", "idx0"], ["re"], axis=3),
        helper.make_node("Gather", ["spec", "idx1"], ["im"], axis=3),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power4"]),
        helper.make_node("Squeeze", ["power4", "axes_last"], ["power"]),
        helper.make_node(
            "MelWeightMatrix", ["n_mels", "dft_length", "sample_rate", "f_min", "f_max"], ["mel_w"]
        ),
        helper.make_node("MatMul", ["power", "mel_w"], ["mel"]),  # [N, 101, 40]
        helper.make_node("Add", ["mel", "log_floor"], ["mel_floor"]),
        helper.make_node("Log", ["mel_floor"], ["logmel"]),
        helper.make_node("Transpose", ["logmel"], ["features"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "acoustic_features",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["N", CLIP_SAMPLES])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", N_MELS, N_FRAMES])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ontime-toolchain"
    )
    model.doc_string = (
        f"log-mel: {N_MELS} mel bins ({F_MIN:g}-{F_MAX:g} Hz), 25 ms Hann window, 10 ms hop, "
        f"n_fft {N_FFT}, zero padding {N_FFT // 2} each side, log(power + {LOG_FLOOR:g})"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_features_model(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build_features_model(), str(path))


class FeatureExtractor:
    """Runs the features graph in onnxruntime in batches (the training side of train/serve parity)."""

    def __init__(self, model_path: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, pcm: np.ndarray, batch: int = 256) -> np.ndarray:
        """pcm float32 [N,16000] -> features float32 [N,40,101]."""
        out = np.empty((len(pcm), N_MELS, N_FRAMES), dtype=np.float32)
        for i in range(0, len(pcm), batch):
            out[i : i + batch] = self._session.run(["features"], {"pcm": pcm[i : i + batch]})[0]
        return out
