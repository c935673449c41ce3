"""`ontime models build acoustic --only openset`: rejection, open-set numbers and INT8 files of the
committed classifiers, without retraining them.

Re-quantizes `student-int8` and `student-pruned-int8` from their committed FP32 parents (last layer
float), fits the postprocess graph's temperature and rejection threshold on calibration data, and
writes every classifier's open-set numbers and `det.png`: the same steps, in the same order, as
the end of the whole build, so both give the same files. Needs the toolchain extra (the build
module imports torch; nothing is trained), espeak-ng and the asterisk recordings.
"""

from __future__ import annotations

import time
from pathlib import Path

from schemas.card import ModelCard

from . import reference
from .build import Build, _log, mark_serving
from .frontend import card_front_ends


def build(out_dir: Path) -> None:
    """Everything after training, on the committed FP32 classifiers (see the module docstring)."""
    started = time.time()
    b = Build(out_dir, quick=False)
    b.eval_data()
    b.unlabelled_copies()  # INT8 calibration reads these windows' features
    b.refresh()
    card_front_ends(out_dir)
    b.postprocess(out_dir / "student" / "model.onnx")
    post = ModelCard.load(out_dir / "postprocess")
    extra = post.model_extra if post.model_extra is not None else {}
    b.open_set(float(extra["temperature"]), b.threshold)
    _log(f"serving: {mark_serving(out_dir)}")
    reference.build(out_dir)  # the INT8 outputs changed: their drift reference with them
    _log(f"openset part done in {time.time() - started:.0f} s")
