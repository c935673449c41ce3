"""Labelled feature sets for training, calibration and held-out evaluation.

Audio is synthesized and augmented here, then turned into features by the served ONNX
front end, so training sees exactly what the preprocess stage produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.acoustic.recordings import BACKGROUND, LABELS, Clip, noise_files

from .augment import AUGMENT_TAG, NoiseBank, background_frame, frame_from_word
from .features import FeatureExtractor
from .synth import plan, synthesize


@dataclass
class FeatureSet:
    name: str
    x: np.ndarray  # float32 [N,40,101]
    y: np.ndarray  # int64 [N]
    pcm: np.ndarray | None = None  # float32 [N,16000], kept where later stages need the audio


def label_index(label: str) -> int:
    return LABELS.index(label)


def synthetic_set(
    name: str,
    split: str,
    work: Path,
    features: FeatureExtractor,
    seed: int,
    per_keyword: int,
    per_unknown: int,
    copies: int,
    n_background: int,
    keep_pcm: bool = False,
    per_extra: int = 0,
) -> FeatureSet:
    """Synthesized words of `split` voices, `copies` augmentations each, plus background frames;
    `per_extra` voices per open-set word (`negatives.extra_words`)."""
    pcm_tag = "_pcm" if keep_pcm else ""
    extra_tag = f"_x{per_extra}" if per_extra else ""
    tags = f"{extra_tag}_{AUGMENT_TAG}{pcm_tag}"
    cache = work / f"{name}_{seed}_{per_keyword}_{per_unknown}_{copies}_{n_background}{tags}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return FeatureSet(name, z["x"], z["y"], z.get("pcm"))
    utts = plan(split, seed, per_keyword, per_unknown, per_extra)
    words, _ = synthesize(utts, work / f"speech_{split}_{seed}_{per_keyword}_{per_unknown}{extra_tag}.npz")
    noise = NoiseBank(noise_files("test" if split == "test" else "train"))
    rng = np.random.default_rng(seed + 1)
    pcm, y = [], []
    for _ in range(copies):
        for u, w in zip(utts, words, strict=True):
            pcm.append(frame_from_word(w, noise, rng))
            y.append(label_index(u.label))
    for _ in range(n_background):
        pcm.append(background_frame(noise, rng))
        y.append(label_index(BACKGROUND))
    audio = np.stack(pcm)
    x = features(audio)
    labels = np.array(y, dtype=np.int64)
    arrays = {"x": x, "y": labels, **({"pcm": audio} if keep_pcm else {})}
    np.savez(cache, **arrays)
    return FeatureSet(name, x, labels, audio if keep_pcm else None)


def clips_set(name: str, clips: list[Clip], features: FeatureExtractor) -> FeatureSet:
    audio = np.stack([c.pcm.astype(np.float32) / 32768.0 for c in clips])
    y = np.array([label_index(c.label) for c in clips], dtype=np.int64)
    return FeatureSet(name, features(audio), y, audio)
