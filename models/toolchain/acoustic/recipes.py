"""Which training recipe `ontime models build acoustic` follows: the served one by default.

`ONTIME_ACOUSTIC_RECIPE=1.2.0` builds the open-set candidate (docs/models-acoustic.md, "Candidate
1.2.0") instead of the served 1.1.0; every number that differs between them is here, so the
default build still reproduces the committed models and the candidate stays reproducible too.
No imports: augment, recipe and build all read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    version: str  # the served INT8 classifier's and the postprocess graph's card version
    open_set: bool  # 530 more espeak-ng words (4 voices) + real it/ru speech windows as `_unknown_`
    copies: int  # augmented copies of each synthetic utterance
    background: int  # background-only training frames
    unlabelled_copies: int  # real unlabelled windows: clean + (n - 1) noisy copies
    max_shift: int  # samples a word's centre may move from the window's centre
    max_cut: float  # share of a shifted word allowed outside the window
    room_share: float  # share of background frames made like a streamed room (augment.room_frame)
    epochs: tuple[int, int, int, int]  # baseline, student, pruned student, gate
    # The real speaker (recordings.SPEECH_TRAIN_DIRS) whose prompts only calibrate the rejection
    # threshold and never train; None: both speakers split by file (3 in 4 train, 1 in 4 calibrate).
    calib_speaker: str | None = None


RECIPES = {
    "1.1.0": Recipe("1.1.0", False, 3, 1500, 5, 2400, 0.0, 0.0, (10, 16, 6, 4)),
    # Open-set data, keywords up to 400 ms off centre, twice the background frames, a third of them
    # stream-like; 1.1.0's copies and epochs. The Italian speaker's windows train as `_unknown_`,
    # the Russian speaker's only calibrate the threshold. (The first, cut-down 1.2.0 build, 2 / 2
    # copies, 3 / 6 / 2 / 2 epochs, both speakers split by file, is replaced by this one; it is in
    # git history, docs/models-acoustic.md "Candidate 1.2.0".)
    "1.2.0": Recipe("1.2.0", True, 3, 3000, 5, 6400, 0.15, 0.3, (10, 16, 6, 4), "ru_RU_f_IvrvoiceRU"),
}
RECIPE = RECIPES[os.environ.get("ONTIME_ACOUSTIC_RECIPE", "1.1.0")]
