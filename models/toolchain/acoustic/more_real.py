"""The served chain on the extra real-speech sets, with Wilson intervals and n.

`python -m models.toolchain.acoustic.more_real [variant ...]` runs features -> classifier ->
postprocess (the committed graphs, onnxruntime only, no torch) on every real set that exists,
including the evaluation-only sources nothing trains on (`keywords_more`, `words_en_eval`,
`words_other_eval` in `pipelines/acoustic/recordings.py`), and prints one markdown table: keyword
accuracy (answered with its own keyword), false rejects, and false accepts (a non-keyword clip
answered with any keyword) at the rejection threshold the postprocess graph carries.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models import MODELS_DIR
from models.toolchain.stats import wilson_interval
from pipelines.acoustic.recordings import COMMANDS, DIGITS, LABELS, UNKNOWN, Clip, real_clips
from schemas.card import Interval

ACOUSTIC = MODELS_DIR / "acoustic"
N_KEYWORDS = len(DIGITS) + len(COMMANDS)

# Set name -> (split of `real_clips`, a substring every clip's source holds, what it is). Keyword
# sets are scored by accuracy, speech sets (all `_unknown_`) by false accepts.
KEYWORD_SETS = {
    "asterisk + klettres keywords": ("keywords", "/", "Allison: 15 words; klettres: 'no' x2"),
    "spokennumbers digits": ("keywords_more", "spokennumbers", "1 speaker, PyPI"),
    "tuxpaint digits (default English)": ("keywords_more", "math/", "1 speaker, not named"),
    "tuxpaint digits (en_GB)": ("keywords_more", "_en_GB", "John Arundel"),
}
SPEECH_SETS = {
    "French prompts": ("speech_eval", "/", "asterisk fr_CA June"),
    "Allison held-out words": ("eval", "/", "letters/phonetic/teens/days, held-out third"),
    "ktuberling English words": ("words_en_eval", "ktuberling", "1 speaker"),
    "hedgewars English lines": ("words_en_eval", "hedgewars", "8 voice packs"),
    "tuxpaint letters + descriptions": ("words_en_eval", "tuxpaint", "en_GB letters + stamp descriptions"),
    "other-language words": ("words_other_eval", "/", "ktuberling 22 languages + 6 hedgewars packs"),
}


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    kind: str  # "keyword accuracy" or "false accepts"
    result: Interval


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def served_labels(variant: str, clips: list[Clip], batch: int = 128) -> npt.NDArray[np.int64]:
    """Top-1 label index of the served chain (rejection included) for each clip."""
    features = _session(ACOUSTIC / "features" / "model.onnx")
    classifier = _session(ACOUSTIC / variant / "model.onnx")
    post = _session(ACOUSTIC / "postprocess" / "model.onnx")
    out: list[npt.NDArray[np.int64]] = []
    for lo in range(0, len(clips), batch):
        pcm = np.stack([c.pcm.astype(np.float32) / 32768.0 for c in clips[lo : lo + batch]])
        (feats,) = features.run(["features"], {"pcm": pcm})
        (logits,) = classifier.run(["logits"], {"features": feats})
        _, top_index, _ = post.run(None, {"logits": logits})
        out.append(np.asarray(top_index[:, 0], dtype=np.int64))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def measure_clips(variant: str, clips: list[Clip]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(true label index, served label index) per clip."""
    labels = np.array([LABELS.index(c.label) for c in clips], dtype=np.int64)
    return labels, served_labels(variant, clips)


@functools.cache
def _clips(split: str) -> tuple[Clip, ...]:
    return tuple(real_clips(split))


def _subset(split: str, holds: str) -> list[Clip]:
    clips = [c for c in _clips(split) if holds in c.source]
    if split == "keywords_more" and holds == "math/":
        clips = [c for c in clips if "_en_GB" not in c.source]
    return clips


def measure(variant: str = "student-int8") -> list[Row]:
    rows: list[Row] = []
    for name, (split, holds, what) in KEYWORD_SETS.items():
        labels, got = measure_clips(variant, _subset(split, holds))
        hits = int((got == labels).sum())
        rows.append(Row(name, what, "keyword accuracy", wilson_interval(hits, len(labels))))
    for name, (split, holds, what) in SPEECH_SETS.items():
        clips = [c for c in _subset(split, holds) if c.label == UNKNOWN]  # "eval": not the background
        labels, got = measure_clips(variant, clips)
        accepts = int((got < N_KEYWORDS).sum())
        rows.append(Row(name, what, "false accepts", wilson_interval(accepts, len(labels))))
    return rows


# The English non-keyword sets new here (`words_en_eval`), pooled in the table.
ENGLISH_WORDS = ("ktuberling English words", "hedgewars English lines", "tuxpaint letters + descriptions")


def pooled(rows: list[Row], kind: str, names: tuple[str, ...] | None = None) -> Interval:
    """One interval over every set of a kind (clips are independent files), or over `names`."""
    chosen = [r for r in rows if r.kind == kind and (names is None or r.name in names)]
    hits = sum(round(r.result.value * r.result.n) for r in chosen)
    return wilson_interval(hits, sum(r.result.n for r in chosen))


def table(variant: str, rows: list[Row]) -> str:
    lines = [
        f"{variant}: served chain (features -> {variant} -> postprocess), 95 % Wilson intervals",
        "",
        "| set | what | measure | value [95 % CI] | n |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        i = r.result
        lines.append(
            f"| {r.name} | {r.what} | {r.kind} | {i.value:.3f} [{i.low:.3f}, {i.high:.3f}] | {i.n} |"
        )
    for name, kind, names in (
        ("**all keywords**", "keyword accuracy", None),
        ("**English non-keyword words**", "false accepts", ENGLISH_WORDS),
        ("**all non-keyword speech**", "false accepts", None),
    ):
        i = pooled(rows, kind, names)
        lines.append(f"| {name} | pooled | {kind} | {i.value:.3f} [{i.low:.3f}, {i.high:.3f}] | {i.n} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    variants = (argv if argv is not None else sys.argv[1:]) or ["student-int8"]
    for variant in variants:
        print(table(variant, measure(variant)))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
