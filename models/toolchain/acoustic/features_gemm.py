"""The served log-mel front end: the STFT as one GEMM against a precomputed windowed DFT basis.

Same contract as the reference STFT graph (`features.py`): `pcm` float32 [N,16000] in [-1,1] ->
`features` float32 [N,40,101] = log(mel power + 1e-6), same window, hop, padding and mel matrix.
It is cheaper because it skips work whose result is known:

- Only the 400 window taps are multiplied (the 512-point frame is 112 zeros), phases are taken
  about the frame's centre (the power does not depend on them), and only bins 1..255 are
  formed: bin 0 and the Nyquist bin carry no mel weight (checked when the graph is built).
- One radix-2 step: taps at even and odd offsets from the centre are multiplied separately
  (A, B) against the basis of bins k = 1..128; bin k is A + B and bin 256 - k is the complex
  conjugate of A - B, so one [200 x 256] basis per parity gives all 255 bins at half the
  multiply-adds of a direct DFT.
- Framing is reshapes and one block Gather (blocks of 40 samples, 1 010 copies a frame) instead
  of a per-sample index.
- Squares of the real and imaginary parts go straight into one mel MatMul whose rows repeat the
  mel weights, so power and mel projection are a single GEMM.

Everything stays float32: this CPU has no float16 GEMM, so float16 would only add casts.
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
    WIN_LENGTH,
    mel_weights,
)

OPSET = 17
HALF_BINS = N_FFT // 4  # k = 1..128: bin k from A + B, bin 256 - k from A - B
TAPS = WIN_LENGTH // 2  # taps per parity: offsets -200..199 from the centre, every other one
BLOCK = 40  # samples per gathered block of one parity stream; HOP / 2 and TAPS are multiples
PAD = WIN_LENGTH // 2  # zeros each side, so frame t covers pcm[160 t - 200 : 160 t + 200]


def _offsets(parity: int) -> np.ndarray:
    """Offsets m from the frame centre of the taps of one parity stream, in tap order."""
    return 2 * np.arange(TAPS) - PAD + parity


def dft_basis() -> np.ndarray:
    """[2 parity, 200 taps, 256] float32: windowed cos | -sin of bins 1..128, phase at the centre."""
    k = np.arange(1, HALF_BINS + 1)
    out = np.zeros((2, TAPS, 2 * HALF_BINS))
    for parity in range(2):
        m = _offsets(parity).astype(np.float64)
        # periodic Hann of 400 about its centre; 0 at m = -200, the tap the STFT frame also zeroes
        window = 0.5 + 0.5 * np.cos(2.0 * np.pi * m / WIN_LENGTH)
        angle = 2.0 * np.pi * np.outer(m, k) / N_FFT
        out[parity, :, :HALF_BINS] = window[:, None] * np.cos(angle)
        out[parity, :, HALF_BINS:] = -window[:, None] * np.sin(angle)
    return out.astype(np.float32)


def mel_basis() -> np.ndarray:
    """[512, 40] float32: mel weights for the squares [lo re | lo im | hi re | hi im].

    lo column k is bin k; hi column k is bin 256 - k, except k = 128 (bin 128 is already lo).
    """
    mel = mel_weights()
    if mel[0].any() or mel[N_FFT // 2].any():
        raise ValueError("the GEMM front end drops bins 0 and 256; this mel matrix weights them")
    k = np.arange(1, HALF_BINS + 1)
    lo = mel[k]
    hi = mel[N_FFT // 2 - k]
    hi[-1] = 0.0
    return np.concatenate([lo, lo, hi, hi]).astype(np.float32)


def frame_blocks() -> np.ndarray:
    """[101, 5] int64: which 40-sample blocks of a parity stream make up frame t's 200 taps."""
    per_hop = HOP // 2 // BLOCK
    return (np.arange(N_FRAMES)[:, None] * per_hop + np.arange(TAPS // BLOCK)[None]).astype(np.int64)


def build_gemm_features_model() -> onnx.ModelProto:
    """pcm float32 [N,16000] in [-1,1] -> features float32 [N,40,101] = log(mel power + 1e-6)."""
    padded = CLIP_SAMPLES + 2 * PAD
    c = numpy_helper.from_array
    inits = [
        c(np.array([0, PAD, 0, PAD], dtype=np.int64), "pads"),
        c(np.array([0, padded // 2, 2], dtype=np.int64), "pairs_shape"),
        c(np.array([0, 2, padded // 2 // BLOCK, BLOCK], dtype=np.int64), "blocks_shape"),
        c(frame_blocks(), "frame_blocks"),
        c(np.array([0, 2, N_FRAMES, TAPS], dtype=np.int64), "frames_shape"),
        c(dft_basis(), "dft_basis"),
        c(np.array([1, 1], dtype=np.int64), "halves"),
        c(mel_basis(), "mel_basis"),
        c(np.array(LOG_FLOOR, dtype=np.float32), "log_floor"),
        c(np.array([0, N_FRAMES, N_MELS], dtype=np.int64), "mel_shape"),
    ]
    nodes = [
        helper.make_node("Pad", ["pcm", "pads"], ["padded"], mode="constant"),
        # even and odd samples as two streams [N, 2, 8200]: parity of the index = parity of m
        helper.make_node("Reshape", ["padded", "pairs_shape"], ["pairs"]),
        helper.make_node("Transpose", ["pairs"], ["streams"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["streams", "blocks_shape"], ["blocks"]),  # [N, 2, 205, 40]
        helper.make_node("Gather", ["blocks", "frame_blocks"], ["framed"], axis=2),  # [N, 2, 101, 5, 40]
        helper.make_node("Reshape", ["framed", "frames_shape"], ["frames"]),  # [N, 2, 101, 200]
        helper.make_node("MatMul", ["frames", "dft_basis"], ["halves_spec"]),  # [N, 2, 101, 256]
        helper.make_node("Split", ["halves_spec", "halves"], ["even", "odd"], axis=1),
        helper.make_node("Add", ["even", "odd"], ["lo"]),  # bins 1..128
        helper.make_node("Sub", ["even", "odd"], ["hi"]),  # bins 255..128, conjugated
        helper.make_node("Concat", ["lo", "hi"], ["spec"], axis=3),  # [N, 1, 101, 512]
        helper.make_node("Mul", ["spec", "spec"], ["squares"]),
        helper.make_node("MatMul", ["squares", "mel_basis"], ["mel4"]),  # [N, 1, 101, 40]
        helper.make_node("Reshape", ["mel4", "mel_shape"], ["mel"]),
        helper.make_node("Add", ["mel", "log_floor"], ["mel_floor"]),
        helper.make_node("Log", ["mel_floor"], ["logmel"]),
        helper.make_node("Transpose", ["logmel"], ["features"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "acoustic_features_gemm",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["N", CLIP_SAMPLES])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", N_MELS, N_FRAMES])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ontime-toolchain"
    )
    model.doc_string = (
        f"log-mel: {N_MELS} mel bins ({F_MIN:g}-{F_MAX:g} Hz), 25 ms Hann window, 10 ms hop, "
        f"n_fft {N_FFT}, zero padding {N_FFT // 2} each side, log(power + {LOG_FLOOR:g}); "
        "DFT as a float32 MatMul against a windowed basis (radix-2 split by tap parity)"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_gemm_features_model(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build_gemm_features_model(), str(path))
