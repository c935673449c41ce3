"""Dispatch `ontime models build|evaluate <pipeline>` to the pipeline's toolchain package.

A pipeline `P` provides `models.toolchain.P.build` with `build(out_dir: Path, quick: bool) -> None`
(train, compress, export, measure, write cards) and optionally `evaluate(out_dir: Path) -> None`
(re-measure the artifacts already in `out_dir` and rewrite their cards). A part that can be built
on its own (without retraining anything else) is a module `models.toolchain.P.<part>` with
`build(out_dir: Path) -> None`; `ontime models build P --only <part>` runs just that.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from models import MODELS_DIR
from models.toolchain import render_cards


def pipeline_module(pipeline: str) -> ModuleType:
    """`models.toolchain.<pipeline>.build`, with a clear error for an unknown pipeline."""
    try:
        return importlib.import_module(f"models.toolchain.{pipeline}.build")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"models.toolchain.{pipeline}"):
            raise SystemExit(f"no model toolchain for pipeline {pipeline!r}") from exc
        raise


def default_out_dir(pipeline: str) -> Path:
    return MODELS_DIR / pipeline


def part_module(pipeline: str, part: str) -> ModuleType:
    """`models.toolchain.<pipeline>.<part>`, which must have `build(out_dir)`."""
    name = f"models.toolchain.{pipeline}.{part}"
    if part == "build":
        raise SystemExit(f"{name} is the whole build: drop --only")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise SystemExit(f"no part {part!r} in the {pipeline!r} model toolchain") from exc
        raise
    if not hasattr(module, "build"):
        raise SystemExit(f"{name} cannot be built on its own")
    return module


def build(pipeline: str, out_dir: Path | None = None, quick: bool = False, only: str | None = None) -> Path:
    """Build every variant of `pipeline` (or just part `only`) into `out_dir`, re-render docs/models.md."""
    target = out_dir or default_out_dir(pipeline)
    target.mkdir(parents=True, exist_ok=True)
    if only:
        part_module(pipeline, only).build(out_dir=target)
    else:
        pipeline_module(pipeline).build(out_dir=target, quick=quick)
    if target.resolve().parent == MODELS_DIR.resolve():
        render_cards.write()
    return target


def reference(pipeline: str, out_dir: Path | None = None, check: bool = False) -> list[str]:
    """Write the drift reference into `pipeline`'s served cards; with `check`, the cards that differ."""
    target = out_dir or default_out_dir(pipeline)
    differences: list[str] = part_module(pipeline, "reference").build(out_dir=target, check=check)
    if not check and target.resolve().parent == MODELS_DIR.resolve():
        render_cards.write()
    return differences


def evaluate(pipeline: str, out_dir: Path | None = None) -> Path:
    """Re-measure the committed variants of `pipeline` and rewrite their cards and the docs."""
    target = out_dir or default_out_dir(pipeline)
    module = pipeline_module(pipeline)
    if not hasattr(module, "evaluate"):
        raise SystemExit(f"pipeline {pipeline!r} has no evaluate step")
    module.evaluate(out_dir=target)
    if target.resolve().parent == MODELS_DIR.resolve():
        render_cards.write()
    return target
