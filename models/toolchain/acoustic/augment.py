"""Turn short synthetic utterances into realistic one-second device frames.

Real noise (sonic-pi-samples, split by file) at 0-20 dB SNR, gain, time shift, speed
perturbation, and a telephone-band low-pass half of the time (the real evaluation speech is 8 kHz).

The time shift (recipes.RECIPE): the served 1.1.0 moves a word by at most 150 ms; the 1.2.0
candidate as far as a streaming device does (with 1 s windows every 125-250 ms a keyword's centre
sits anywhere within ~400 ms of a window's centre), and adds stream-like background frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from pipelines.acoustic.recordings import CLIP_SAMPLES, load_audio

from .recipes import RECIPE

SPEEDS = ((9, 10), (19, 20), (1, 1), (21, 20), (11, 10))  # resample ratios up/down
# Tag of the augmentation recipe in the build's cache file names: frames cached by one recipe are
# never reused by another.
AUGMENT_TAG = f"r{RECIPE.version}"
MAX_SHIFT = RECIPE.max_shift  # samples a word's centre moves from the window's centre (1.2.0: 400 ms)
MAX_CUT = RECIPE.max_cut  # at most this share of a shifted word may fall outside the window
ROOM_SHARE = RECIPE.room_share  # share of background frames made like a streamed room
ROOM_RMS_DB = (-60.0, -20.0)  # background-only "room" frames: RMS in dBFS (streams: -45 to -28)


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
    out = place(word, int(rng.integers(-MAX_SHIFT, MAX_SHIFT + 1)))
    if rng.random() < 0.5:
        out = telephone(out)
    if rng.random() < 0.8:
        snr_db = rng.uniform(0.0, 20.0)
        n = noise.window(rng)
        out = out + n * (_rms(word) / _rms(n)) / (10.0 ** (snr_db / 20.0))
    else:
        out = out + rng.normal(0, 1, CLIP_SAMPLES).astype(np.float32) * gain * 10 ** rng.uniform(-4, -2.5)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def place(word: np.ndarray, shift: int) -> np.ndarray:
    """`word` in a 1 s frame, its centre `shift` samples from the frame's centre; at most MAX_CUT
    of it may fall outside (a larger shift is clamped)."""
    n = len(word)
    cut = int(MAX_CUT * n)
    start = int(np.clip((CLIP_SAMPLES - n) // 2 + shift, -cut, CLIP_SAMPLES - n + cut))
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    lo, hi = max(0, start), min(CLIP_SAMPLES, start + n)
    out[lo:hi] = word[lo - start : hi - start]
    return out


def room_frame(noise: NoiseBank, rng: np.random.Generator) -> np.ndarray:
    """Background as a streamed device hears it: two noise windows joined at a random point (a
    stream chains recordings), levelled by RMS rather than peak."""
    a, b = noise.window(rng), noise.window(rng)
    cut = int(rng.integers(0, CLIP_SAMPLES))
    out = np.concatenate([a[:cut] / (_rms(a) or 1.0), b[cut:] / (_rms(b) or 1.0)])
    return (out * 10 ** (rng.uniform(*ROOM_RMS_DB) / 20)).astype(np.float32)


def background_frame(noise: NoiseBank, rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.1:
        out = rng.normal(0, 1, CLIP_SAMPLES).astype(np.float32) * 10 ** rng.uniform(-5, -3)
    elif kind < 0.1 + ROOM_SHARE:
        out = room_frame(noise, rng)
    else:
        n = noise.window(rng)
        out = n / max(1e-4, float(np.abs(n).max())) * float(np.exp(rng.uniform(np.log(0.005), np.log(0.5))))
    if rng.random() < 0.5:
        out = telephone(out)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
