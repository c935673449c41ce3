"""`ontime models reference acoustic`: drift reference statistics of the served models, in their cards.

The reference is the served student's training data, frame for frame as the build makes it (same
seeds, same order): the augmented espeak-ng frames, the real labelled negatives and the five copies
of the real unlabelled windows. Raw-audio groups (level, silence) go into the `features` card, the
preprocess stage's; log-mel and output groups into each infer variant's card. The thresholds are
chosen on held-out streams (recordings the reference never saw) against drifted ones; the scores
behind them are stored in the card (`reference.measured`). Deterministic: a rerun writes the same
numbers (`--check` compares instead of writing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.toolchain.latency import open_session
from pipelines.acoustic.recordings import CLIP_SAMPLES, LABELS, noise_files, real_clips, to_int16
from pipelines.acoustic.streams import build_stream, windows
from schemas.card import ModelCard
from schemas.drift import DriftReference, GroupReference, Measure, WindowScores
from workers.telemetry.drift_stats import bin_counts, measure, psi, quantile_edges, shares

from .augment import NoiseBank, background_frame, frame_from_word
from .features import FeatureExtractor
from .realdata import unlabelled_real
from .recipe import (
    CALIB_SPEAKER,
    EXTRA_TRAIN_VOICES,
    N_UNLABELLED,
    OPEN_SET_TRAINING,
    SEED,
    TRAIN_BACKGROUND,
    TRAIN_COPIES,
    TRAIN_PER_KEYWORD,
    TRAIN_PER_UNKNOWN,
    UNLABELLED_COPIES,
    noisy,
)
from .synth import plan, synthesize

FRONT_END = "features"
CLASSIFIERS = ("student-int8", "student-pruned-int8")
WINDOW_FRAMES = 512  # the live window the thresholds are chosen for (observability.drift_window_frames)
BINS = 10  # output groups: equal-mass bins of the training frames
# Input groups: the training audio is deliberately wider than any one deployment (gain, SNR, phone
# band, 30 % background), so healthy traffic fills only part of it, which equal-mass bins read as
# drift. Their bins are the training's tails instead: below the 1st percentile, between, above the 99th.
TAILS = 0.01
DECIMALS = 6  # stored numbers are rounded, so a rerun reproduces them exactly
# Counts of the build's training frames (synth.plan: 15 keywords x 120 voices + 50 words x 30 +
# 530 open-set words x EXTRA_TRAIN_VOICES, each TRAIN_COPIES times, + TRAIN_BACKGROUND) and of its
# real labelled negatives (181 English words and background; with open set + the speech_train
# windows: 3 140 it/ru by file, or 2 064 Italian with the Russian speaker held out to calibrate).
_SYNTHETIC = (15 * TRAIN_PER_KEYWORD + 50 * TRAIN_PER_UNKNOWN + 530 * EXTRA_TRAIN_VOICES) * TRAIN_COPIES
SPEECH_TRAIN_WINDOWS = {None: 3140, "ru_RU_f_IvrvoiceRU": 2064}  # by recipes.Recipe.calib_speaker
_NEGATIVES = 181 + (SPEECH_TRAIN_WINDOWS[CALIB_SPEAKER] if OPEN_SET_TRAINING else 0)
SOURCE = (
    "the served student's training frames as `ontime models build acoustic` makes them (seed "
    f"{SEED}): {_SYNTHETIC + TRAIN_BACKGROUND} augmented espeak-ng frames, {_NEGATIVES} real labelled "
    f"negatives, 6240 real unlabelled windows x {UNLABELLED_COPIES} (clean + real noise at 0-20 dB); "
    "`ontime models reference acoustic`"
)


@dataclass(frozen=True)
class GroupSpec:
    """A group before it has reference numbers: what it measures, on which tensor."""

    name: str
    measure: Measure
    tensor: str  # "input" or "output"
    what: str
    params: tuple[tuple[str, float], ...] = ()
    categories: int = 0  # > 0: one bin per integer value
    tails: float = 0.0  # > 0: three bins, below / between / above these quantiles

    def template(self) -> GroupReference:
        return GroupReference(
            measure=self.measure,
            tensor=self.tensor,  # type: ignore[arg-type]
            params=dict(self.params),
            edges=[],
            probs=[],
            mean=[],
            var=[],
            threshold=0.0,
            what=self.what,
        )


AUDIO_GROUPS = (
    GroupSpec("level", "rms_dbfs", "input", "RMS level of the frame in dBFS", (("block", 160),), tails=TAILS),
    GroupSpec(
        "silence",
        "silence_share",
        "input",
        "share of 10 ms blocks quieter than -60 dBFS",
        (("block", 160), ("floor_db", -60.0)),
        tails=TAILS,
    ),
)
INFER_GROUPS = (
    GroupSpec(
        "logmel",
        "axis_mean",
        "input",
        "per mel band: the frame's mean log-mel over time (40 bands)",
        tails=TAILS,
    ),
    GroupSpec("labels", "top1_index", "output", "top-1 label", categories=len(LABELS)),
    GroupSpec("confidence", "top1_prob", "output", "top-1 softmax probability of the logits (T = 1)"),
)


def _log(msg: str) -> None:
    print(f"[reference {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the training frames -----------------------------------------------------------------------
def training_audio(work: Path, chunk: int = 2048) -> Iterator[np.ndarray]:
    """float32 [n, 16000] chunks of the student's training frames, in the build's order.

    Repeats `data.synthetic_set("train", ...)`, `clips_set("real_negatives", ...)` and the
    teacher's unlabelled copies with the build's seeds, without holding all of them at once.
    """
    utts = plan("train", SEED, TRAIN_PER_KEYWORD, TRAIN_PER_UNKNOWN, EXTRA_TRAIN_VOICES)
    extra_tag = f"_x{EXTRA_TRAIN_VOICES}" if EXTRA_TRAIN_VOICES else ""
    speech = f"speech_train_{SEED}_{TRAIN_PER_KEYWORD}_{TRAIN_PER_UNKNOWN}{extra_tag}.npz"
    words, _ = synthesize(utts, work / speech)
    noise = NoiseBank(noise_files("train"))
    rng = np.random.default_rng(SEED + 1)
    pcm: list[np.ndarray] = []
    for _ in range(TRAIN_COPIES):
        for w in words:
            pcm.append(frame_from_word(w, noise, rng))
            if len(pcm) == chunk:
                yield np.stack(pcm)
                pcm = []
    for _ in range(TRAIN_BACKGROUND):
        pcm.append(background_frame(noise, rng))
        if len(pcm) == chunk:
            yield np.stack(pcm)
            pcm = []
    if pcm:
        yield np.stack(pcm)
    negatives = real_clips("unknown_train") + real_clips("background_train")
    if OPEN_SET_TRAINING:
        negatives += real_clips("speech_train", held_out=CALIB_SPEAKER)
    yield np.stack([c.pcm.astype(np.float32) / 32768.0 for c in negatives])
    cache = work / "unl_clean.npz"
    if cache.is_file():
        with np.load(cache) as z:
            clean = z["pcm"]
    else:
        clean, _ = unlabelled_real(max_clips=N_UNLABELLED, seed=SEED)
        np.savez(cache, pcm=clean)
    train_noise = NoiseBank(noise_files("train"))
    for copy in range(UNLABELLED_COPIES):
        copy_rng = np.random.default_rng(100 + copy)
        for i in range(0, len(clean), chunk):
            part = clean[i : i + chunk]
            yield part if copy == 0 else np.stack([noisy(x, train_noise, copy_rng) for x in part])


class Chain:
    """The served front end and the infer variants, run on audio as the stages run them."""

    def __init__(self, out_dir: Path) -> None:
        self.fe = FeatureExtractor(out_dir / FRONT_END / "model.onnx")
        self.sessions = {v: open_session(out_dir / v / "model.onnx") for v in CLASSIFIERS}

    def __call__(self, audio: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Per card: the stage's input and output tensors for these frames."""
        x = self.fe(audio)
        out: dict[str, dict[str, np.ndarray]] = {FRONT_END: {"input": audio, "output": x}}
        for v, session in self.sessions.items():
            logits = np.concatenate(
                [session.run(None, {"features": x[i : i + 256]})[0] for i in range(0, len(x), 256)]
            )
            out[v] = {"input": x, "output": logits}
        return out


def _groups_of(card: str) -> tuple[GroupSpec, ...]:
    return AUDIO_GROUPS if card == FRONT_END else INFER_GROUPS


def measure_all(chain: Chain, chunks: Iterator[np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """card -> group -> float64 [N, D] measures over every frame of `chunks`."""
    values: dict[str, dict[str, list[np.ndarray]]] = {}
    for audio in chunks:
        for card, tensors in chain(audio).items():
            for g in _groups_of(card):
                values.setdefault(card, {}).setdefault(g.name, []).append(
                    measure(g.template(), tensors[g.tensor])
                )
    return {c: {g: np.concatenate(v) for g, v in groups.items()} for c, groups in values.items()}


def fit_group(spec: GroupSpec, values: np.ndarray) -> GroupReference:
    """Bin edges, shares, mean and variance of the reference `values` [N, D]."""
    if spec.categories:
        edges = np.tile(np.arange(spec.categories - 1) + 0.5, (values.shape[1], 1))
    elif spec.tails:
        edges = np.round(np.quantile(values, [spec.tails, 1 - spec.tails], axis=0).T, DECIMALS)
    else:
        edges = np.round(quantile_edges(values, BINS), DECIMALS)
    probs = np.round(shares(bin_counts(values, edges)), DECIMALS + 2)
    ref = spec.template()
    ref.edges = edges.tolist()
    ref.probs = probs.tolist()
    ref.mean = np.round(values.mean(axis=0), DECIMALS).tolist()
    ref.var = np.round(values.var(axis=0), DECIMALS).tolist()
    return ref


# -- held-out and drifted streams ----------------------------------------------------------------
def _as_device(x: np.ndarray) -> np.ndarray:
    """What a microphone sends: s16le, read back as the decoder does."""
    return to_int16(np.clip(x, -1.0, 1.0)).astype(np.float32) * np.float32(1.0 / 32768.0)


def _stream_frames(seed: int, seconds: float, snr_db: float | None, gain_db: float = 0.0) -> np.ndarray:
    audio = build_stream(
        "eval", seconds, int(seconds // 5), seed, snr_db=snr_db, distractors=int(seconds // 10)
    )
    frames = windows(audio.pcm, CLIP_SAMPLES // 4).astype(np.float32) / 32768.0
    return _as_device(frames * np.float32(10 ** (gain_db / 20)))


def _clips(gain_db: float, repeats: int) -> np.ndarray:
    clips = np.stack([c.pcm.astype(np.float32) / 32768.0 for c in real_clips("eval")])
    return _as_device(np.tile(clips, (repeats, 1)) * np.float32(10 ** (gain_db / 20)))


def _noise_only(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = 10 ** (rng.uniform(-40, -10, size=(frames, 1)) / 20)
    return _as_device(rng.standard_normal((frames, CLIP_SAMPLES)).astype(np.float32) * level)


def streams() -> list[tuple[str, bool, np.ndarray]]:
    """(name, drifted, frames): held-out streams first, then drifted ones. None is in the reference."""

    def stream(snr_db: float | None, seeds: tuple[int, ...], gain_db: float = 0.0) -> np.ndarray:
        return np.concatenate([_stream_frames(s, 150, snr_db, gain_db) for s in seeds])

    clean = [
        ("eval stream, quiet room", False, stream(None, (1, 2, 3, 4))),
        ("eval stream, noise at 20 dB SNR", False, stream(20.0, (5, 6, 7, 8))),
        ("eval stream, noise at 10 dB SNR", False, stream(10.0, (9, 10, 11, 12))),
        ("real eval clips", False, _clips(0.0, 24)),
    ]
    drifted = [
        ("white noise only, -40..-10 dBFS", True, _noise_only(2048, 7)),
        ("eval stream at -30 dB", True, stream(None, (1, 2, 3, 4), -30.0)),
        ("real eval clips at -30 dB", True, _clips(-30.0, 24)),
        ("real eval clips at +20 dB (clipping)", True, _clips(20.0, 24)),
    ]
    return clean + drifted


def window_scores(refs: dict[str, GroupReference], values: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """PSI per group on consecutive windows of WINDOW_FRAMES frames (the last partial one dropped)."""
    n = len(next(iter(values.values())))
    out = []
    for start in range(0, n - WINDOW_FRAMES + 1, WINDOW_FRAMES):
        out.append(
            {
                g: psi(
                    np.asarray(r.probs),
                    bin_counts(values[g][start : start + WINDOW_FRAMES], np.asarray(r.edges)),
                )
                for g, r in refs.items()
            }
        )
    return out


def choose_threshold(clean: list[float]) -> float:
    """Half as much again as the worst held-out window, never below the PSI rule of thumb 0.25."""
    return float(max(0.25, np.ceil(1.5 * max(clean) * 20) / 20))


def reference_cards(out_dir: Path) -> dict[str, DriftReference]:
    """The `reference` block of each card, measured from scratch (about 2 minutes, no torch)."""
    work = out_dir / "_work"
    work.mkdir(parents=True, exist_ok=True)
    chain = Chain(out_dir)
    _log("measuring the training frames (espeak-ng speech is synthesized once, then cached)")
    train = measure_all(chain, training_audio(work))
    refs = {card: {g.name: fit_group(g, train[card][g.name]) for g in _groups_of(card)} for card in train}
    scored: dict[str, list[tuple[str, bool, list[dict[str, float]]]]] = {card: [] for card in refs}
    for name, drifted, frames in streams():
        _log(f"scoring {name} ({len(frames)} frames)")
        values = measure_all(chain, iter([frames[i : i + 2048] for i in range(0, len(frames), 2048)]))
        for card, groups in refs.items():
            scored[card].append((name, drifted, window_scores(groups, values[card])))
    out: dict[str, DriftReference] = {}
    for card, groups in refs.items():
        for g, ref in groups.items():
            ref.threshold = choose_threshold([w[g] for _, d, ws in scored[card] if not d for w in ws])
        measured = [
            WindowScores(
                stream=name,
                drifted=drifted,
                windows=len(ws),
                max={g: round(max(w[g] for w in ws), 3) for g in groups},
                median={g: round(float(np.median([w[g] for w in ws])), 3) for g in groups},
            )
            for name, drifted, ws in scored[card]
        ]
        out[card] = DriftReference(
            source=SOURCE,
            frames=len(train[card][next(iter(groups))]),
            window_frames=WINDOW_FRAMES,
            groups=groups,
            measured=measured,
        )
    return out


def build(out_dir: Path, check: bool = False) -> list[str]:
    """Write each card's `reference` (or, with `check`, list where the committed one differs)."""
    differences: list[str] = []
    for card_name, reference in reference_cards(out_dir).items():
        card = ModelCard.load(out_dir / card_name)
        if check:
            committed = card.reference.model_dump() if card.reference else None
            where = _first_difference(committed, reference.model_dump(), card_name)
            if where:
                differences.append(where)
            continue
        card.reference = reference
        card.save(out_dir / card_name)
        _log(f"{card_name}: " + ", ".join(f"{g} > {r.threshold}" for g, r in reference.groups.items()))
    return differences


def _first_difference(a: object, b: object, path: str, tolerance: float = 1e-5) -> str | None:
    """Where two dumped references differ beyond float rounding (another CPU's last bits), if anywhere."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            found = _first_difference(a[key], b[key], f"{path}.{key}", tolerance)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{i}]", tolerance)
            if found:
                return found
        return None
    if isinstance(a, float) and isinstance(b, float):
        # Stored numbers carry 6 to 8 decimals (window scores 3); a step in the last one is rounding.
        limit = 1.5e-3 if ".measured" in path else tolerance
        return None if abs(a - b) <= limit else f"{path}: {a} vs {b}"
    return None if a == b else f"{path}: {a!r} vs {b!r}"
