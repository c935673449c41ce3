"""The acoustic front end defined in plain numpy: log of 40 HTK mel bands of a 512-point rfft.

This is the definition both ONNX front ends (`acoustic/features`, `acoustic/features-stft`) are
checked against, and the numpy row of `ontime bench frontend`. The mel matrix follows the ONNX
`MelWeightMatrix` operator exactly (same integer bin edges, same triangles), so it equals what the
STFT graph computes at run time. Only numpy is needed.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

SAMPLE_RATE: Final = 16_000
CLIP_SAMPLES: Final = 16_000
N_FFT: Final = 512
WIN_LENGTH: Final = 400  # 25 ms
HOP: Final = 160  # 10 ms
N_MELS: Final = 40
N_FRAMES: Final = 1 + CLIP_SAMPLES // HOP  # 101, with N_FFT/2 zero padding on both sides
F_MIN: Final = 20.0
F_MAX: Final = 7600.0
LOG_FLOOR: Final = 1e-6

Array = npt.NDArray[np.float32]


def hann_window() -> Array:
    """Periodic Hann of 25 ms, centred in the 512-point DFT frame (zeros outside)."""
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)
    out = np.zeros(N_FFT, dtype=np.float32)
    left = (N_FFT - WIN_LENGTH) // 2
    out[left : left + WIN_LENGTH] = hann
    return out


def mel_weights() -> Array:
    """[257, 40] triangles on the HTK mel scale, as ONNX `MelWeightMatrix` defines them."""
    n_bins = N_FFT // 2 + 1
    mel_lo = 2595.0 * np.log1p(F_MIN / 700.0) / np.log(10.0)
    mel_hi = 2595.0 * np.log1p(F_MAX / 700.0) / np.log(10.0)
    edges_mel = np.arange(N_MELS + 2) * ((mel_hi - mel_lo) / (N_MELS + 2)) + mel_lo
    edges_hz = 700.0 * np.expm1(edges_mel / 2595.0 * np.log(10.0))
    edges = (((N_FFT + 1) * edges_hz) // SAMPLE_RATE).astype(np.int64)
    out = np.zeros((n_bins, N_MELS))
    for i in range(N_MELS):
        left, centre, right = (int(e) for e in edges[i : i + 3])
        if centre == left:
            out[centre, i] = 1.0
        else:
            for j in range(left, centre + 1):
                out[j, i] = (j - left) / (centre - left)
        for j in range(centre, right):
            out[j, i] = (right - j) / (right - centre)
    return out.astype(np.float32)


class LogMel:
    """numpy rfft + mel matmul: pcm [N,16000] in [-1,1] -> [N,40,101], in float32 or float64."""

    def __init__(self, dtype: type[np.floating[Any]] = np.float32) -> None:
        self._dtype = dtype
        self._window = hann_window().astype(dtype)
        self._mel = mel_weights().astype(dtype)

    def __call__(self, pcm: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]:
        half = N_FFT // 2
        padded = np.pad(np.asarray(pcm, dtype=self._dtype), ((0, 0), (half, half)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::HOP]
        spectrum = np.fft.rfft(frames * self._window, axis=-1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(self._dtype)
        logmel = np.log(power @ self._mel + self._dtype(LOG_FLOOR))
        return np.ascontiguousarray(logmel.transpose(0, 2, 1))
