"""Synthetic training speech from espeak-ng, split by voice so no voice is in train and test.

A "voice" is an espeak-ng accent plus a variant (timbre); test voices use variants that never
appear in training, so the held-out synthetic score measures generalisation to new voices.
"""

from __future__ import annotations

import io
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from pipelines.acoustic.recordings import COMMANDS, DIGITS, active_span

from .negatives import extra_words

ACCENTS = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
TRAIN_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4",
    "klatt", "klatt3", "Alex", "Andy", "Alicia", "aunty", "boris", "caleb", "david", "ed",
    "iven", "john", "linda", "max", "michel", "paul", "norbert", "grandma",
)  # fmt: skip
TEST_VARIANTS = ("m7", "f5", "klatt2", "Annie", "belinda", "benjamin", "edward", "kaukovalta")
# Temperature and INT8 calibration use voices that are in neither training nor test.
CALIB_VARIANTS = ("m8", "Gene", "Lee", "adam", "anika")
# Words that are not keywords: the `_unknown_` class. Some are deliberately close to keywords.
UNKNOWN_WORDS = (
    "yes", "left", "right", "up", "down", "on", "off", "stop", "go", "house", "bird", "cat", "dog",
    "happy", "tree", "wow", "bed", "learn", "follow", "forward", "backward", "visual", "eleven",
    "twelve", "twenty", "hundred", "alpha", "bravo", "ten", "often", "nothing", "window", "light",
    "music", "kitchen", "open", "close", "later", "night", "water", "okay", "thanks", "below",
    "hold", "cord", "fine", "wait", "one two", "phone", "door",
)  # fmt: skip


@dataclass(frozen=True)
class Utterance:
    word: str
    label: str
    voice: str
    speed: int
    pitch: int


def _voices(variants: tuple[str, ...]) -> list[str]:
    return [f"{accent}+{variant}" for accent in ACCENTS for variant in variants]


def plan(split: str, seed: int, per_keyword: int, per_unknown: int, per_extra: int = 0) -> list[Utterance]:
    """Which words to speak with which voices, speeds and pitches (deterministic in `seed`).

    `per_extra` voices speak each of the split's open-set words (`negatives.extra_words`), after
    the keywords and the fixed unknown words, so the earlier utterances do not change with it.
    """
    rng = np.random.default_rng(seed)
    variants = {"train": TRAIN_VARIANTS, "test": TEST_VARIANTS, "calib": CALIB_VARIANTS}[split]
    voices = _voices(variants)
    out: list[Utterance] = []

    def pick(word: str, label: str, n: int) -> None:
        for v in rng.choice(len(voices), size=min(n, len(voices)), replace=False):
            out.append(
                Utterance(word, label, voices[v], int(rng.integers(120, 200)), int(rng.integers(25, 75)))
            )

    for word in (*DIGITS, *COMMANDS):
        pick(word, word, per_keyword)
    for word in UNKNOWN_WORDS:
        pick(word, "_unknown_", per_unknown)
    if per_extra:
        for word in extra_words(split):
            pick(word, "_unknown_", per_extra)
    return out


def speak(u: Utterance) -> np.ndarray:
    """One utterance as float32 16 kHz, trimmed to its active region."""
    cmd = ["espeak-ng", "-v", u.voice, "-s", str(u.speed), "-p", str(u.pitch), "--stdout", u.word]
    wav = subprocess.run(cmd, check=True, capture_output=True).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    g = int(np.gcd(int(rate), 16_000))
    x = resample_poly(x, 16_000 // g, int(rate) // g).astype(np.float32)
    lo, hi = active_span(x, floor_db=40.0)
    x = x[max(0, lo - 400) : hi + 400]
    return x[:16_000] / max(1e-4, float(np.abs(x).max()))


def synthesize(
    utts: list[Utterance], cache: Path, threads: int = 2
) -> tuple[list[np.ndarray], list[Utterance]]:
    """Speak every utterance (cached as one .npz of concatenated samples, no pickle)."""
    if cache.is_file():
        with np.load(cache) as z:
            audio, lengths = z["audio"], z["lengths"]
        if len(lengths) == len(utts):
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            return [audio[bounds[i] : bounds[i + 1]] for i in range(len(utts))], utts
    with ThreadPoolExecutor(threads) as pool:
        clips = list(pool.map(speak, utts))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, audio=np.concatenate(clips), lengths=np.array([len(c) for c in clips]))
    return clips, utts
