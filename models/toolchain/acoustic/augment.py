"""Turn short synthetic utterances into realistic one-second device frames.

Real noise (sonic-pi-samples, split by file) at 0-20 dB SNR, gain, time shift, speed
perturbation, and a telephone-band low-pass half of the time (the real evaluation speech is 8 kHz).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from pipelines.acoustic.recordings import CLIP_SAMPLES, load_audio

SPEEDS = ((9, 10), (19, 20), (1, 1), (21, 20), (11, 10))  # resample ratios up/down


class NoiseBank:
    """Concatenated real noise recordings to cut random windows from."""

    def __init__(self, files: list[Path]) -> None:
        parts = []
        for f in files:
            x = load_audio(f)
            peak = float(np.abs(x).max())
            if len(x) >= 1600 and peak > 1e-4:
                parts.append(x / peak)
        self.audio = np.concatenate(parts).astype(np.float32)

    def window(self, rng: np.random.Generator, n: int = CLIP_SAMPLES) -> np.ndarray:
        start = int(rng.integers(0, len(self.audio) - n))
        return self.audio[start : start + n]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def telephone(x: np.ndarray) -> np.ndarray:
    """Band-limit to 4 kHz as an 8 kHz channel does."""
    return resample_poly(resample_poly(x, 1, 2), 2, 1)[: len(x)].astype(np.float32)


def frame_from_word(word: np.ndarray, noise: NoiseBank, rng: np.random.Generator) -> np.ndarray:
    up, down = SPEEDS[int(rng.integers(len(SPEEDS)))]
    if (up, down) != (1, 1):
        word = resample_poly(word, up, down).astype(np.float32)
    word = word[:CLIP_SAMPLES]
    gain = float(np.exp(rng.uniform(np.log(0.1), np.log(0.9))))
    word = word / max(1e-4, float(np.abs(word).max())) * gain
    slack = CLIP_SAMPLES - len(word)
    centre = slack // 2
    offset = int(np.clip(centre + rng.integers(-2400, 2401), 0, slack))
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    out[offset : offset + len(word)] = word
    if rng.random() < 0.5:
        out = telephone(out)
    if rng.random() < 0.8:
        snr_db = rng.uniform(0.0, 20.0)
        n = noise.window(rng)
        out = out + n * (_rms(word) / _rms(n)) / (10.0 ** (snr_db / 20.0))
    else:
        out = out + rng.normal(0, 1, CLIP_SAMPLES).astype(np.float32) * gain * 10 ** rng.uniform(-4, -2.5)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def background_frame(noise: NoiseBank, rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.1:
        out = rng.normal(0, 1, CLIP_SAMPLES).astype(np.float32) * 10 ** rng.uniform(-5, -3)
    else:
        n = noise.window(rng)
        out = n / max(1e-4, float(np.abs(n).max())) * float(np.exp(rng.uniform(np.log(0.005), np.log(0.5))))
    if rng.random() < 0.5:
        out = telephone(out)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
