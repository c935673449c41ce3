"""A new model version made ready beside the serving one: verified, shape-checked, warmed up.

Nothing here touches the serving model: a version that fails any check is refused with a short
code (`missing`, `checksum`, `shape`, `warm-up`) and the stage keeps what it serves. The timings
of the warm-up become the new version's cost prior, as they do for a model loaded at start.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.card import ModelCard
from workers.deadlines.costs import Line
from workers.errors import ModelError
from workers.stages.model import OnnxModel, variant_dir

REFUSALS = ("missing", "checksum", "shape", "warm-up")
"""Why a version is refused: not on disk or its card invalid, sha256 differs from its card,
inputs or outputs differ from the serving version's, or it fails or misbehaves on warm-up."""


class Refused(ModelError):
    """A version that must not serve; `code` is one of REFUSALS."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Ready:
    """A verified, warmed-up version and what its warm-up measured."""

    model: OnnxModel
    prior: Line


def prepare(ref: str, current: OnnxModel, *, max_batch: int, threads: int = 1, root: Path) -> Ready:
    """Load `ref` and check it can take `current`'s place; raises Refused saying why not."""
    _check_file(ref, root)
    try:
        model = OnnxModel(ref, threads=threads, root=root)
    except ModelError as exc:
        raise Refused("missing", str(exc)) from None
    _check_signature(model, current)
    return Ready(model, _warm(model, max_batch))


def _check_file(ref: str, root: Path) -> None:
    """Missing and checksum refusals, told apart before onnxruntime sees the bytes."""
    directory = variant_dir(ref, root)
    try:
        card = ModelCard.load(directory)
        blob = (directory / card.file).read_bytes()
    except (OSError, ValueError) as exc:
        raise Refused("missing", f"model {ref}: cannot read its card or file ({exc})") from None
    actual = hashlib.sha256(blob).hexdigest()
    if actual != card.sha256:
        raise Refused("checksum", f"model {ref}: sha256 is {actual}, its card says {card.sha256}")


def _signature(model: OnnxModel) -> tuple[list[tuple[str, str, tuple[object, ...]]], ...]:
    """Names, types and non-batch dims of the inputs and outputs, as onnxruntime reads the graph."""
    session = model.session
    return tuple(
        [(a.name, a.type, tuple(d if isinstance(d, int) else None for d in a.shape[1:])) for a in args]
        for args in (session.get_inputs(), session.get_outputs())
    )


def _check_signature(model: OnnxModel, current: OnnxModel) -> None:
    new, old = _signature(model), _signature(current)
    for side, a, b in (("inputs", new[0], old[0]), ("outputs", new[1], old[1])):
        if a != b:
            raise Refused(
                "shape", f"model {model.ref}: {side} {a} differ from the serving {current.ref}'s {b}"
            )
    if model.card.labels != current.card.labels:
        raise Refused("shape", f"model {model.ref}: its labels differ from the serving {current.ref}'s")


def _warm(model: OnnxModel, max_batch: int, rounds: int = 3) -> Line:
    """Run zeros at batch 1 and `max_batch`; every output must have the batch's rows and be finite."""
    spec = model.session.get_inputs()[0]
    dtype = _DTYPES.get(spec.type, np.float32)
    timings: dict[int, float] = {}
    for n in sorted({1, max_batch}):
        feed = {spec.name: np.zeros([n, *(d if isinstance(d, int) else 1 for d in spec.shape[1:])], dtype)}
        runs = []
        for _ in range(rounds + 1):
            started = time.perf_counter()
            try:
                out = model.run(feed)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise Refused("warm-up", f"model {model.ref}: fails on a batch of {n}: {exc}") from None
            runs.append((time.perf_counter() - started) * 1000.0)
        for name, array in out.items():
            if array.shape[:1] != (n,) or (array.dtype.kind == "f" and not np.isfinite(array).all()):
                raise Refused(
                    "warm-up", f"model {model.ref}: output {name} {array.shape} is not {n} finite rows"
                )
        timings[n] = float(np.median(runs[1:]))
    top = max(timings)
    per_item = max(0.0, (timings[top] - timings[1]) / (top - 1)) if top > 1 else 0.0
    intercept = max(0.0, timings[1] - per_item)
    return Line(intercept, per_item, tail_ms=intercept + per_item)


_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int16)": np.int16,
           "tensor(int64)": np.int64, "tensor(uint8)": np.uint8}  # fmt: skip
