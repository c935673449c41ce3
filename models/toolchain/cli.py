"""`ontime models build|evaluate|reference|render`: the toolchain's CLI verbs.

Registered by workers.cli.main through `register_cli`; torch and the pipeline code are imported only
when a command runs, so `ontime --help` works without the toolchain extra installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# argparse does not export the type of `add_subparsers()`'s result.
Subparsers = Any


def _build(args: argparse.Namespace) -> int:
    from models.toolchain import build

    out = build.build(args.target, out_dir=args.out, quick=args.quick, only=args.only)
    print(f"built {args.target} {args.only or 'models'} in {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from models.toolchain import build

    out = build.evaluate(args.target, out_dir=args.out)
    print(f"re-evaluated {args.target} models in {out}")
    return 0


def _reference(args: argparse.Namespace) -> int:
    from models.toolchain import build

    differences = build.reference(args.target, out_dir=args.out, check=args.check)
    if args.check:
        if differences:
            print(f"drift reference differs from the committed card: {', '.join(differences)}")
            return 1
        print(f"drift references of {args.target} reproduce the committed cards")
        return 0
    print(f"wrote the drift references of {args.target}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from models.toolchain import render_cards

    print(render_cards.write())
    return 0


def register_cli(subparsers: Subparsers) -> Subparsers:
    """Add `models` with `build`, `evaluate`, `reference`, `render` to a top-level subparsers object.

    Each command sets `func(args) -> int`. Returns the `models` subparsers so the caller can add
    its own verbs next to them (e.g. `verify`). The positional is stored as `target`, not
    `pipeline`, so it cannot clobber the top-level `--pipeline` option.
    """
    models = subparsers.add_parser("models", help="build, evaluate and document the ONNX models")
    verbs = models.add_subparsers(dest="models_command", required=True)

    build = verbs.add_parser("build", help="train, compress, export and measure a pipeline's models")
    build.add_argument("target", metavar="PIPELINE", help="pipeline name, e.g. acoustic or vision")
    build.add_argument("--quick", action="store_true", help="small data and few epochs (smoke run)")
    build.add_argument("--out", type=Path, default=None, help="output dir (default models/<pipeline>)")
    build.add_argument(
        "--only", default=None, metavar="PART", help="build one part alone, e.g. frontend (acoustic)"
    )
    build.set_defaults(func=_build)

    evaluate = verbs.add_parser("evaluate", help="re-measure committed models and rewrite their cards")
    evaluate.add_argument("target", metavar="PIPELINE", help="pipeline name, e.g. acoustic or vision")
    evaluate.add_argument("--out", type=Path, default=None, help="models dir (default models/<pipeline>)")
    evaluate.set_defaults(func=_evaluate)

    reference = verbs.add_parser(
        "reference", help="write the drift reference (training-data statistics) into the served cards"
    )
    reference.add_argument("target", metavar="PIPELINE", help="pipeline name, e.g. acoustic")
    reference.add_argument("--out", type=Path, default=None, help="models dir (default models/<pipeline>)")
    reference.add_argument(
        "--check", action="store_true", help="recompute and compare with the cards instead of writing"
    )
    reference.set_defaults(func=_reference)

    render = verbs.add_parser("render", help="rewrite docs/models.md from every card.json")
    render.set_defaults(func=_render)
    return verbs
