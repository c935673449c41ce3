"""Continuous microphone audio with real keywords mixed in at known times and levels.

A stream is background (real sonic-pi recordings, looped and levelled) with real non-keyword
words (asterisk prompts) as distractors and keyword utterances at known positions; the ground
truth says where each keyword's audio starts and ends. Two disjoint sources:

- "eval": human keyword recordings (asterisk speaker, klettres speakers), held-out unknown words
  and held-out noise files: what `ontime bench events`, the demo and the tests stream.
- "eval_more": the same, but the keywords are the evaluation-only digit recordings of three more
  speakers (`real_clips("keywords_more")`): the benchmark's "clean, more speakers" condition.
- "tune": espeak-ng voices the served models never saw (neither training nor test variants),
  training unknown words and training noise files: the only audio the event thresholds are
  tuned on.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import resample_poly

from pipelines.acoustic.recordings import (
    COMMANDS,
    DIGITS,
    SAMPLE_RATE,
    active_span,
    keyword_clips,
    load_audio,
    noise_files,
    real_clips,
    to_int16,
    unknown_files,
)

__all__ = ["SAMPLE_RATE", "Spoken", "StreamAudio", "background", "build_stream", "windows"]

SOURCES: Final = ("eval", "eval_more", "tune")
KEYWORDS: Final = (*DIGITS, *COMMANDS)
# espeak-ng voices in neither the models' training nor their test set (the calibration voices).
TUNE_VOICES: Final = tuple(
    f"{accent}+{variant}"
    for accent in ("en-us", "en", "en-gb-x-rp", "en-029")
    for variant in ("m8", "Gene", "Lee", "adam", "anika")
)
# Each tuning voice at three speaking rates (words/min) and pitches: real speakers differ in both.
TUNE_PROSODY: Final = ((150, 50), (125, 38), (185, 64))
BACKGROUND_RMS: Final = 10 ** (-45 / 20)  # quiet room; the "noisy" condition raises it by SNR
KEYWORD_PEAK: Final = 0.5


@dataclass(frozen=True, slots=True)
class Spoken:
    """One word placed in a stream: what, where (ms from the stream's first sample), from where."""

    word: str
    start_ms: int
    end_ms: int
    source: str
    keyword: bool


@dataclass(frozen=True)
class StreamAudio:
    """A device's continuous audio and what is in it."""

    pcm: npt.NDArray[np.int16]
    spoken: list[Spoken]
    # (start_ms, end_ms, file) of each background recording in the stream: which noise a false
    # alarm came from (docs/events.md, error analysis).
    noise: tuple[tuple[int, int, str], ...] = ()

    @property
    def keywords(self) -> list[Spoken]:
        return [s for s in self.spoken if s.keyword]

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) * 1000 // SAMPLE_RATE


def _trim(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    lo, hi = active_span(x)
    return x[lo:hi]


@cache
def keyword_recordings(source: str) -> tuple[tuple[str, str, npt.NDArray[np.float32]], ...]:
    """(keyword, where from, trimmed audio at 16 kHz) for every keyword recording of `source`."""
    if source == "eval":
        return tuple((c.label, c.source, _trim(c.pcm.astype(np.float32) / 32767.0)) for c in keyword_clips())
    if source == "eval_more":
        # More held-out speakers (digits only: spokennumbers, tuxpaint's two number-stamp voices).
        more = real_clips("keywords_more")
        return tuple((c.label, c.source, _trim(c.pcm.astype(np.float32) / 32767.0)) for c in more)
    if source == "tune":
        sets = [(w, v, r, p) for w in KEYWORDS for v in TUNE_VOICES for r, p in TUNE_PROSODY]
        with ThreadPoolExecutor(2) as pool:  # espeak-ng runs as a process: two at a time
            spoken = list(pool.map(lambda s: _espeak(*s), sets))
        return tuple((w, f"espeak-ng:{v}:s{r}p{p}", x) for (w, v, r, p), x in zip(sets, spoken, strict=True))
    raise ValueError(f"source must be one of {SOURCES}, not {source!r}")


@cache
def distractor_recordings(source: str) -> tuple[tuple[str, str, npt.NDArray[np.float32]], ...]:
    """Real words that are no keyword (asterisk speaker), split by file between eval and tune."""
    files = unknown_files("train" if source == "tune" else "eval")
    return tuple((f.stem, str(f), _trim(load_audio(f))) for f in files)


@cache
def _noise(source: str) -> tuple[tuple[str, npt.NDArray[np.float32]], ...]:
    out = []
    for path in noise_files("train" if source == "tune" else "test"):
        x = load_audio(path)
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0
        if len(x) >= SAMPLE_RATE // 2 and rms > 1e-4:
            out.append((str(path), (x / rms).astype(np.float32)))
    return tuple(out)


def _espeak(word: str, voice: str, rate: int = 150, pitch: int = 50) -> npt.NDArray[np.float32]:
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", word]
    wav = subprocess.run(cmd, check=True, capture_output=True).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = x.mean(axis=1)
    g = int(np.gcd(int(rate), SAMPLE_RATE))
    return _trim(np.asarray(resample_poly(mono, SAMPLE_RATE // g, int(rate) // g), dtype=np.float32))


def background(
    source: str,
    samples: int,
    rng: np.random.Generator,
    rms: float = BACKGROUND_RMS,
    pieces: list[tuple[int, int, str]] | None = None,
) -> npt.NDArray[np.float32]:
    """`samples` of real recordings of `source`'s noise files, chained in random order, at `rms`;
    each piece's (start_ms, end_ms, file) is appended to `pieces` if given."""
    noises = _noise(source)
    out = np.zeros(samples, dtype=np.float32)
    at = 0
    while at < samples:
        name, x = noises[int(rng.integers(len(noises)))]
        take = min(len(x), samples - at, 20 * SAMPLE_RATE)
        out[at : at + take] = x[:take]
        if pieces is not None:
            pieces.append((at * 1000 // SAMPLE_RATE, (at + take) * 1000 // SAMPLE_RATE, name))
        at += take
    return out * rms


def build_stream(
    source: str,
    seconds: float,
    keywords: int | Sequence[str],
    seed: int = 0,
    *,
    snr_db: float | None = None,
    distractors: int = 0,
    lead_s: float = 2.0,
    spacing_s: float = 4.0,
) -> StreamAudio:
    """`seconds` of audio: background, `keywords` utterances every ~`spacing_s` after `lead_s`,
    and `distractors` non-keyword words in the gaps. `keywords` is a count (recordings drawn at
    random) or the words themselves, in order. `snr_db` sets the background level relative to the
    speech (None: a quiet room). Same arguments, same audio."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * SAMPLE_RATE)
    speech_rms = KEYWORD_PEAK / 4.0
    rms = BACKGROUND_RMS if snr_db is None else speech_rms / 10 ** (snr_db / 20)
    pieces: list[tuple[int, int, str]] = []
    x = background(source, samples, rng, rms, pieces)
    spoken: list[Spoken] = []
    recs, others = keyword_recordings(source), distractor_recordings(source)
    if isinstance(keywords, int):
        order = [int(i) for i in rng.permutation(len(recs))]
        count = keywords
    else:
        by_word = {r[0]: i for i, r in reversed(list(enumerate(recs)))}
        order = [by_word[w] for w in keywords]
        count = len(order)
    slots = [lead_s + i * spacing_s for i in range(count + distractors)]
    slots = [s for s in slots if s + spacing_s / 2 < seconds]
    kinds = [True] * min(count, len(slots)) + [False] * max(0, len(slots) - count)
    if isinstance(keywords, int):
        rng.shuffle(kinds)
    used = 0
    for slot, is_keyword in zip(slots, kinds, strict=True):
        if is_keyword:
            word, where, audio = recs[order[used % len(order)]]
            used += 1
        else:
            word, where, audio = others[int(rng.integers(len(others)))]
        start = int((slot + float(rng.uniform(0.0, 1.0))) * SAMPLE_RATE)
        end = min(samples, start + len(audio))
        x[start:end] += audio[: end - start] * (KEYWORD_PEAK / max(1e-4, float(np.abs(audio).max())))
        spoken.append(Spoken(word, start * 1000 // SAMPLE_RATE, end * 1000 // SAMPLE_RATE, where, is_keyword))
    return StreamAudio(to_int16(x), spoken, tuple(pieces))


def windows(pcm: npt.NDArray[np.int16], hop: int, size: int = SAMPLE_RATE) -> npt.NDArray[np.int16]:
    """Overlapping frames of `size` samples every `hop` samples (k-th frame ends at k·hop + size)."""
    if len(pcm) < size:
        return np.zeros((0, size), dtype=np.int16)
    count = (len(pcm) - size) // hop + 1
    idx = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    return np.asarray(pcm[idx], dtype=np.int16)
