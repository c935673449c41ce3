"""Real human recordings with known labels, read from Debian packages.

The device simulator publishes these as frames, and the accuracy tests run the served ONNX chain
on them: real speech is the number that counts, synthetic voices only train the models. Every
clip comes back as 16 kHz mono int16, exactly one second, centred on its speech and zero-padded.
Only numpy, soundfile and scipy are needed, so this module runs without the training toolchain.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE: Final = 16_000
CLIP_SAMPLES: Final = 16_000

ALLISON_DIR: Final = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ALLISON_PACKAGE: Final = "asterisk-core-sounds-en-wav"
KLETTRES_DIR: Final = Path("/usr/share/klettres")
KLETTRES_PACKAGE: Final = "klettres-data"
SONIC_PI_DIR: Final = Path("/usr/share/sonic-pi/samples")
ASTERISK_SOUNDS: Final = Path("/usr/share/asterisk/sounds")
SONIC_PI_PACKAGE: Final = "sonic-pi-samples"

DIGITS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS: Final = ("hello", "goodbye", "no", "pause", "record")
UNKNOWN: Final = "_unknown_"
BACKGROUND: Final = "_background_"
LABELS: Final = (*DIGITS, *COMMANDS, UNKNOWN, BACKGROUND)

# Keyword -> recordings of it by a human speaker (paths relative to the package's root).
_ALLISON_KEYWORDS: Final = {
    **{word: f"digits/{i}.wav" for i, word in enumerate(DIGITS)},
    "hello": "hello.wav",
    "goodbye": "goodbye.wav",
    "no": "vm-no.wav",
    "pause": "dictate/pause.wav",
    "record": "dictate/record.wav",
}
# klettres-data has two more human speakers saying "no" (US and British English).
_KLETTRES_KEYWORDS: Final = {"no": ("en/syllab/no.ogg", "en_GB/syllab/no.ogg")}
# Real words that are none of the keywords, by the same human speaker: letters, the phonetic
# alphabet, teens and days. Every third one is held out for evaluation; the rest may be used as
# unlabelled distillation audio by the toolchain (see `unknown_files`).
_ALLISON_UNKNOWN_DIRS: Final = ("letters", "phonetic")
_ALLISON_UNKNOWN_WORDS: Final = (
    *(f"digits/{n}.wav" for n in (*range(11, 20), 20, 30, 40, 50)),
    *(f"digits/day-{d}.wav" for d in range(7)),
    "time.wav",
    "number.wav",
    "location.wav",
    "enabled.wav",
    "disabled.wav",
    "removed.wav",
    "calling.wav",
)
# Letters whose names sound like a keyword ("o" ~ "oh"/zero, "n" ~ "nine"?) stay out of the
# unknown class: they are neither clearly a keyword nor clearly not one.
_AMBIGUOUS: Final = frozenset({"letters/o.wav", "letters/zed.wav", "letters/z.wav"})

# Real human speech in other languages, by speakers the English keywords never come from: the
# asterisk prompt sets. None of it is an English keyword, so every window is honestly `_unknown_`;
# number words (digits/), letters that sound like a keyword, tones and silence are left out.
# June (Canadian French) is only ever evaluated on; Carlo (Italian) and the Russian speaker are
# split by file: three in four train, one in four calibrate the rejection threshold.
SPEECH_EVAL_DIRS: Final = {"fr_CA_f_June": "asterisk-core-sounds-fr-wav"}
SPEECH_TRAIN_DIRS: Final = {
    "it_IT_m_Carlo": "asterisk-core-sounds-it-wav",
    "ru_RU_f_IvrvoiceRU": "asterisk-core-sounds-ru-wav",
}
_SKIP_SUBDIRS: Final = frozenset({"digits", "silence"})
_SKIP_NAMES: Final = ("beep", "tone", "vm-no.", "letters/o.", "letters/z")

# More real speech, evaluation only: no training list, distillation pool or threshold ever reads
# these directories (`tests/unit/pipelines/test_acoustic_recordings.py` checks the paths).
# spokennumbers (PyPI, MIT): the digits 0-9 as one English speaker's microphone recordings (44.1 kHz
# true stereo), the files named by the digit they say; the package's docs name neither the speaker
# nor say "human", so its numbers are reported on their own, never folded into the asterisk set.
SPOKENNUMBERS_PACKAGE: Final = "spokennumbers"
# hedgewars-data (Debian, GFDL-1.3): a game's voice packs, one actor each, short exclamations named by
# what they say ("Coward", "Takecover", "Youllregretthat"). Greetings and partings ("Hello",
# "Byebye", "Solong": file names that do not say the exact words), "Nooo", lines holding a keyword
# sound ("Thisoneismine", "Ohdear", "Uh-oh") and non-speech (pain, laughs, coughs, jumps) are left
# out; the Robot pack is processed and left out too.
HEDGEWARS_DIR: Final = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
HEDGEWARS_PACKAGE: Final = "hedgewars-data"
HEDGEWARS_ENGLISH: Final = (
    "British",
    "Classic",
    "Default",
    "HillBilly",
    "Mobster",
    "Pirate",
    "Singer",
    "Surfer",
)
HEDGEWARS_OTHER: Final = ("Default_es", "Default_pl", "Default_ru", "Default_uk", "Russian", "Russian_pl")
_HEDGEWARS_SKIP: Final = (
    "hello", "byebye", "solong", "nooo", "thisoneismine", "ohdear", "uh-oh",
    "ow", "ooff", "laugh", "poisoncough", "poisonmoan", "firepunch", "jump", "hmm",
)  # fmt: skip
# ktuberling-data (Debian, GPL-2+): a children's game's object names ("nose", "umbrella",
# "pizzeria_mushroom" = "mushroom"), one speaker per language; none is a keyword. Serbian scripts
# share recordings, so files are deduplicated by content.
KTUBERLING_DIR: Final = Path("/usr/share/ktuberling/sounds")
KTUBERLING_PACKAGE: Final = "ktuberling-data"
# tuxpaint-stamps-default (Debian, GPL-2+): the number stamps say their digit (`symbols/math/<d>.ogg`,
# the English default, 11 kHz, speaker not named; `<d>_en_GB.ogg`, "British English descriptive
# sounds for numbers and letters, John Arundel" in the package changelog), the letter stamps say
# their letter (en_GB, same speaker; "O" and "Z" left out as for Allison), and English stamp
# descriptions (`<stamp>_desc.ogg`) say the first line of `<stamp>.txt` ("A wombat."); a description
# holding a keyword or a sound-alike ("Two wild boars.") is left out.
TUXPAINT_DIR: Final = Path("/usr/share/tuxpaint/stamps")
TUXPAINT_PACKAGE: Final = "tuxpaint-stamps-default"
_SOUND_ALIKES: Final = frozenset(
    {"oh", "o", "to", "too", "for", "fore", "won", "ate", "know", "nine", "nein"}
)

SPLITS: Final = (
    "eval",
    "keywords",
    "unknown_train",
    "background_train",
    "speech_eval",
    "speech_train",
    "speech_calib",
    "keywords_more",
    "words_en_eval",
    "words_other_eval",
)


class RecordingsMissing(RuntimeError):
    """A Debian package that holds the recordings is not installed."""


@dataclass(frozen=True)
class Clip:
    """One second of 16 kHz mono speech (or background) with its label."""

    label: str
    pcm: npt.NDArray[np.int16]
    source: str

    @property
    def payload(self) -> bytes:
        """The frame as a microphone publishes it: s16le PCM."""
        return np.ascontiguousarray(self.pcm, dtype="<i2").tobytes()


def _require(directory: Path, package: str) -> None:
    if not directory.is_dir():
        raise RecordingsMissing(
            f"{directory} not found: install the Debian package {package!r} (apt-get install {package})"
        )


def load_audio(path: Path) -> npt.NDArray[np.float32]:
    """Read any soundfile-readable file as mono float32 at 16 kHz."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = int(np.gcd(int(rate), SAMPLE_RATE))
        mono = resample_poly(mono, SAMPLE_RATE // g, int(rate) // g)
    return np.asarray(mono, dtype=np.float32)


def active_span(x: npt.NDArray[np.float32], floor_db: float = 35.0) -> tuple[int, int]:
    """First and last sample of the region within `floor_db` of the loudest 10 ms frame."""
    hop = SAMPLE_RATE // 100
    n = max(1, len(x) // hop)
    frames = x[: n * hop].reshape(n, hop) if len(x) >= hop else x.reshape(1, -1)
    energy = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(energy > energy.max() - floor_db)
    if active.size == 0:
        return 0, len(x)
    return int(active[0] * hop), int(min(len(x), (active[-1] + 1) * hop))


def centre_clip(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Crop or zero-pad to exactly one second, centred on the active region."""
    start, end = active_span(x)
    centre = (start + end) // 2
    begin = centre - CLIP_SAMPLES // 2
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    src_lo, src_hi = max(0, begin), min(len(x), begin + CLIP_SAMPLES)
    if src_hi > src_lo:
        out[src_lo - begin : src_hi - begin] = x[src_lo:src_hi]
    return out


def to_int16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    return np.asarray(np.clip(np.round(x * 32767.0), -32768, 32767), dtype=np.int16)


def _speech_clip(label: str, path: Path) -> Clip:
    return Clip(label=label, pcm=to_int16(centre_clip(load_audio(path))), source=str(path))


def noise_files(split: str) -> list[Path]:
    """sonic-pi-samples recordings, split by file: every fourth (sorted) is held out as "test"."""
    _require(SONIC_PI_DIR, SONIC_PI_PACKAGE)
    files = sorted(SONIC_PI_DIR.glob("*.flac"))
    if split == "test":
        return files[::4]
    if split == "train":
        return [f for i, f in enumerate(files) if i % 4 != 0]
    raise ValueError(f"noise split must be 'train' or 'test', not {split!r}")


def _background_clips(files: list[Path], per_file: int = 1) -> list[Clip]:
    """One-second windows from the loudest part of each noise recording."""
    clips: list[Clip] = []
    for path in files:
        x = load_audio(path)
        if len(x) < CLIP_SAMPLES:
            x = np.pad(x, (0, CLIP_SAMPLES - len(x)))
        step = max(1, (len(x) - CLIP_SAMPLES) // per_file)
        for k in range(per_file):
            seg = x[k * step : k * step + CLIP_SAMPLES]
            peak = float(np.abs(seg).max())
            if peak < 1e-4:
                continue
            # Devices hear background at a modest level; keep the recording's shape, cap its peak.
            seg = seg * min(1.0, 0.3 / peak)
            clips.append(Clip(label=BACKGROUND, pcm=to_int16(seg), source=f"{path}#{k}"))
    return clips


def unknown_files(split: str) -> list[Path]:
    """Real non-keyword words by the asterisk speaker; every third (sorted) is "eval"."""
    _require(ALLISON_DIR, ALLISON_PACKAGE)
    names = [f"{d}/{p.name}" for d in _ALLISON_UNKNOWN_DIRS for p in sorted((ALLISON_DIR / d).glob("*.wav"))]
    names = [n for n in names if n not in _AMBIGUOUS and "ascii" not in n]
    names = sorted({*names, *_ALLISON_UNKNOWN_WORDS})
    files = [ALLISON_DIR / n for n in names if (ALLISON_DIR / n).is_file()]
    if split == "eval":
        return files[::3]
    if split == "train":
        return [f for i, f in enumerate(files) if i % 3 != 0]
    raise ValueError(f"unknown split must be 'train' or 'eval', not {split!r}")


def speech_files(split: str, held_out: str | None = None) -> list[Path]:
    """Non-English asterisk prompts: "eval" (June, fr-CA), "train" / "calib" (Carlo + ru, by file).

    held_out (a SPEECH_TRAIN_DIRS name): "calib" is every prompt of that speaker and "train" every
    prompt of the others, so the rejection threshold is set on a voice no model heard.
    """
    if split not in ("eval", "train", "calib"):
        raise ValueError(f"speech split must be 'eval', 'train' or 'calib', not {split!r}")
    if held_out is not None and held_out not in SPEECH_TRAIN_DIRS:
        raise ValueError(f"held_out must be one of {sorted(SPEECH_TRAIN_DIRS)}, not {held_out!r}")
    dirs = SPEECH_EVAL_DIRS if split == "eval" else SPEECH_TRAIN_DIRS
    files: list[Path] = []
    for name, package in dirs.items():
        _require(ASTERISK_SOUNDS / name, package)
        for path in sorted((ASTERISK_SOUNDS / name).rglob("*.wav")):
            rel = path.relative_to(ASTERISK_SOUNDS / name).as_posix()
            if rel.split("/")[0] in _SKIP_SUBDIRS or any(k in rel for k in _SKIP_NAMES):
                continue
            files.append(path)
    if held_out is not None and split != "eval":
        mine = ASTERISK_SOUNDS / held_out
        return [f for f in files if f.is_relative_to(mine) == (split == "calib")]
    if split == "calib":
        return files[::4]
    if split == "train":
        return [f for i, f in enumerate(files) if i % 4 != 0]
    return files


def speech_windows(files: list[Path], hop: int = CLIP_SAMPLES // 2) -> list[Clip]:
    """Every one-second window (half overlap) of each file that holds speech, as `_unknown_`;
    hop=0: one window per file, centred on its speech."""
    clips: list[Clip] = []
    for path in files:
        x = load_audio(path)
        if len(x) < SAMPLE_RATE // 10:
            continue  # empty or a click
        if len(x) <= CLIP_SAMPLES * 1.2 or hop == 0:
            windows = [centre_clip(x)]
        else:
            windows = [x[s : s + CLIP_SAMPLES] for s in range(0, len(x) - CLIP_SAMPLES + 1, hop)]
        for k, w in enumerate(windows):
            if float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) >= 3e-3:
                clips.append(Clip(label=UNKNOWN, pcm=to_int16(w), source=f"{path}#{k}"))
    return clips


def spokennumbers_dir() -> Path:
    """The digit recordings inside the installed spokennumbers package (found, never imported)."""
    spec = importlib.util.find_spec(SPOKENNUMBERS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RecordingsMissing(
            f"install the PyPI package {SPOKENNUMBERS_PACKAGE!r} (the 'dev' extra: pip install -e '.[dev]')"
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / "default"
    _require(directory, SPOKENNUMBERS_PACKAGE)
    return directory


def more_keyword_files() -> list[tuple[str, Path]]:
    """(keyword, file) for every keyword recording outside asterisk/klettres: the digits of
    spokennumbers and of tuxpaint's number stamps (default English and en_GB)."""
    directory = spokennumbers_dir()
    _require(TUXPAINT_DIR / "symbols" / "math", TUXPAINT_PACKAGE)
    math = TUXPAINT_DIR / "symbols" / "math"
    pairs = [(word, directory / f"{i}.wav") for i, word in enumerate(DIGITS)]
    pairs += [(word, math / f"{i}.ogg") for i, word in enumerate(DIGITS)]
    pairs += [(word, math / f"{i}_en_GB.ogg") for i, word in enumerate(DIGITS)]
    missing = [str(p) for _, p in pairs if not p.is_file()]
    if missing:
        raise RecordingsMissing(
            f"{missing} not found: reinstall {SPOKENNUMBERS_PACKAGE!r} (PyPI) "
            f"or {TUXPAINT_PACKAGE!r} (Debian)"
        )
    return pairs


def _words(text: str) -> set[str]:
    return {w.strip(".,!?;:'\"()").lower() for w in text.split()}


def _tuxpaint_english_files() -> list[Path]:
    """tuxpaint's en_GB letters (one recording each) and English stamp descriptions."""
    _require(TUXPAINT_DIR / "symbols" / "alphabets" / "english", TUXPAINT_PACKAGE)
    keywords = set(DIGITS) | set(COMMANDS) | _SOUND_ALIKES
    letters: dict[str, Path] = {}
    for path in sorted((TUXPAINT_DIR / "symbols" / "alphabets" / "english").rglob("*_en_GB.ogg")):
        letter = path.name.split("_")[0].upper()
        if letter not in ("O", "Z"):
            letters.setdefault(letter, path)
    descriptions = []
    for path in sorted(TUXPAINT_DIR.rglob("*_desc.ogg")):
        text = path.with_name(path.name.removesuffix("_desc.ogg") + ".txt")
        first = text.read_text(encoding="utf-8").splitlines()[0] if text.is_file() else ""
        if first.strip() and not _words(first) & keywords:
            descriptions.append(path)
    return [letters[k] for k in sorted(letters)] + descriptions


def _hedgewars_files(packs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for pack in packs:
        _require(HEDGEWARS_DIR / pack, HEDGEWARS_PACKAGE)
        for path in sorted((HEDGEWARS_DIR / pack).glob("*.ogg")):
            if not path.stem.lower().startswith(_HEDGEWARS_SKIP):
                files.append(path)
    return files


def _ktuberling_files(english: bool) -> list[Path]:
    _require(KTUBERLING_DIR, KTUBERLING_PACKAGE)
    seen: set[str] = set()
    files: list[Path] = []
    for lang in sorted(p for p in KTUBERLING_DIR.iterdir() if p.is_dir()):
        if (lang.name == "en") != english:
            continue
        for path in sorted(p for p in lang.iterdir() if p.suffix in (".ogg", ".wav", ".opus")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                files.append(path)
    return files


def more_speech_files(split: str) -> list[Path]:
    """Real non-keyword words by speakers nothing trains on: "en" (ktuberling's English speaker, the
    English hedgewars packs, tuxpaint's letters and descriptions) or "other" (ktuberling's other
    languages + the other hedgewars packs)."""
    if split == "en":
        return (
            _ktuberling_files(english=True) + _hedgewars_files(HEDGEWARS_ENGLISH) + _tuxpaint_english_files()
        )
    if split == "other":
        return _ktuberling_files(english=False) + _hedgewars_files(HEDGEWARS_OTHER)
    raise ValueError(f"more speech split must be 'en' or 'other', not {split!r}")


def keyword_clips() -> list[Clip]:
    """Every human recording of a keyword: the asterisk speaker, plus klettres speakers for "no"."""
    _require(ALLISON_DIR, ALLISON_PACKAGE)
    clips = [_speech_clip(label, ALLISON_DIR / rel) for label, rel in _ALLISON_KEYWORDS.items()]
    if KLETTRES_DIR.is_dir():
        for label, rels in _KLETTRES_KEYWORDS.items():
            paths = [KLETTRES_DIR / rel for rel in rels]
            clips.extend(_speech_clip(label, p) for p in paths if p.is_file())
    return clips


def real_clips(split: str = "eval", held_out: str | None = None) -> list[Clip]:
    """Labelled real recordings, one second each at 16 kHz, in a fixed order.

    Splits: "eval" = every keyword recording + held-out unknown words + held-out background;
    "keywords" = the keyword recordings only; "unknown_train" / "background_train" = the
    disjoint real negatives the toolchain may train or calibrate on (never evaluated on);
    "speech_eval" = one centred second of each French prompt by a speaker nothing trains or
    calibrates on (real non-keyword speech); "speech_train" / "speech_calib" = windows of the
    Italian and Russian prompts, for training and for calibrating the rejection threshold (by file,
    or with `held_out` one speaker's prompts calibrate and the other's train: `speech_files`).
    Evaluation only, from packages nothing trains on: "keywords_more" = spokennumbers' digits;
    "words_en_eval" / "words_other_eval" = one centred second of each ktuberling and hedgewars
    word or exclamation, English / other languages, all `_unknown_`.
    """
    if split == "keywords":
        return keyword_clips()
    if split == "eval":
        unknown = [_speech_clip(UNKNOWN, p) for p in unknown_files("eval")]
        return keyword_clips() + unknown + _background_clips(noise_files("test"))
    if split == "unknown_train":
        return [_speech_clip(UNKNOWN, p) for p in unknown_files("train")]
    if split == "background_train":
        return _background_clips(noise_files("train"))
    if split == "speech_eval":
        return [c for c in speech_windows(speech_files("eval"), hop=0) if c.source.endswith("#0")]
    if split == "keywords_more":
        return [_speech_clip(label, path) for label, path in more_keyword_files()]
    if split in ("words_en_eval", "words_other_eval"):
        files = more_speech_files(split.split("_")[1])
        return [c for c in speech_windows(files, hop=0) if c.source.endswith("#0")]
    if split in ("speech_train", "speech_calib"):
        return speech_windows(speech_files(split.removeprefix("speech_"), held_out))
    raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
