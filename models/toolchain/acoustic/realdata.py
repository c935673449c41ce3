"""Unlabelled real human audio for distillation: klettres-data + asterisk prompts.

Nothing here is evaluated on: the evaluation recordings (`real_clips("eval")`) are excluded by
path, so the teacher's soft labels teach the student what real voices sound like without the
student ever seeing a test clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.acoustic.recordings import (
    ALLISON_DIR,
    CLIP_SAMPLES,
    KLETTRES_DIR,
    centre_clip,
    load_audio,
    real_clips,
)


def _eval_sources() -> set[str]:
    return {c.source.split("#")[0] for c in real_clips("eval")}


def unlabelled_real(max_clips: int = 4000, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """float32 [N,16000] one-second windows of real speech (no labels), and where each came from."""
    excluded = _eval_sources()
    files = sorted(p for p in KLETTRES_DIR.glob("*/*/*.ogg")) + sorted(ALLISON_DIR.rglob("*.wav"))
    clips: list[np.ndarray] = []
    sources: list[str] = []
    for path in files:
        if str(path) in excluded:
            continue
        x = load_audio(Path(path))
        if len(x) <= CLIP_SAMPLES * 1.2:
            windows = [centre_clip(x)]
        else:
            windows = [
                x[s : s + CLIP_SAMPLES] for s in range(0, len(x) - CLIP_SAMPLES + 1, CLIP_SAMPLES // 2)
            ]
        for k, w in enumerate(windows):
            if float(np.sqrt(np.mean(w**2))) < 1e-3:
                continue  # silence: the background class has plenty
            clips.append(w.astype(np.float32))
            sources.append(f"{path}#{k}")
    order = np.random.default_rng(seed).permutation(len(clips))[:max_clips]
    order.sort()
    return np.stack([clips[i] for i in order]), [sources[i] for i in order]
