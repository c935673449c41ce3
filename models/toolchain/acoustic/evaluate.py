"""Evaluation sets on real human speech and held-out synthetic voices, run through onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.toolchain.latency import open_session
from models.toolchain.stats import accuracy
from pipelines.acoustic.recordings import CLIP_SAMPLES, COMMANDS, DIGITS, LABELS, noise_files, real_clips
from schemas.card import Interval

from .augment import NoiseBank
from .data import FeatureSet, clips_set
from .features import FeatureExtractor

N_KEYWORDS = len(DIGITS) + len(COMMANDS)
NOISY_SNRS_DB = (20.0, 10.0, 5.0)

# What each evaluation set is, for the cards.
EVAL_SETS = {
    "real": "asterisk-core-sounds-en-wav + klettres-data: every human keyword recording, "
    "held-out real "
    "unknown words, held-out sonic-pi background (real_clips('eval'))",
    "real_keywords": "the human keyword recordings only (17 clips: 15 words, 'no' by 3 speakers)",
    "real_keywords_noisy": "the human keyword recordings mixed with held-out sonic-pi noise "
    "at 20/10/5 dB SNR, "
    "8 noise windows each",
    "synthetic_test": "espeak-ng voices whose variants are in neither training nor "
    "calibration, held-out noise; a third of the unknown words are words training never heard",
    "real_speech": "real non-keyword speech by a speaker nothing trains or calibrates on: one "
    "centred second of each Canadian-French asterisk prompt (asterisk-core-sounds-fr-wav, "
    "number words left out), all `_unknown_` (real_clips('speech_eval'))",
}


@dataclass
class EvalData:
    sets: dict[str, FeatureSet]


def noisy_keywords(features: FeatureExtractor, seed: int = 7, windows: int = 8) -> FeatureSet:
    """Each real keyword clip + held-out real noise at fixed SNRs (deterministic)."""
    clips = real_clips("keywords")
    noise = NoiseBank(noise_files("test"))
    rng = np.random.default_rng(seed)
    pcm, y = [], []
    for clip in clips:
        x = clip.pcm.astype(np.float32) / 32768.0
        rms = float(np.sqrt(np.mean(x**2)))
        for snr in NOISY_SNRS_DB:
            for _ in range(windows):
                n = noise.window(rng, CLIP_SAMPLES)
                n = n * (rms / float(np.sqrt(np.mean(n**2)) + 1e-9)) / 10 ** (snr / 20.0)
                pcm.append(np.clip(x + n, -1, 1).astype(np.float32))
                y.append(LABELS.index(clip.label))
    audio = np.stack(pcm)
    return FeatureSet("real_keywords_noisy", features(audio), np.array(y, dtype=np.int64), audio)


def real_sets(features: FeatureExtractor) -> dict[str, FeatureSet]:
    real = clips_set("real", real_clips("eval"), features)
    kw = real.y < N_KEYWORDS
    assert real.pcm is not None
    keywords = FeatureSet("real_keywords", real.x[kw], real.y[kw], real.pcm[kw])
    speech = clips_set("real_speech", real_clips("speech_eval"), features)
    return {
        "real": real,
        "real_keywords": keywords,
        "real_keywords_noisy": noisy_keywords(features),
        "real_speech": speech,
    }


def onnx_logits(
    model_path: Path, x: np.ndarray, input_name: str = "features", batch: int = 256
) -> np.ndarray:
    session = open_session(model_path, threads=2)
    return np.concatenate(
        [session.run(None, {input_name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    )


def score(logits: np.ndarray, y: np.ndarray) -> Interval:
    return accuracy(logits.argmax(axis=1), y)


def evaluate_onnx(model_path: Path, sets: dict[str, FeatureSet]) -> dict[str, Interval]:
    return {name: score(onnx_logits(model_path, s.x), s.y) for name, s in sets.items()}
