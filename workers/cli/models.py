"""`ontime models verify`: is every model the pipeline names on disk, carded and unaltered?

Workers refuse a model whose sha256 differs from its card at load time; this checks the same
thing ahead of a deploy, for every stage's primary model and its fallback, in one table.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workers.stages.model import Check, check_models


def render(checks: list[Check]) -> str:
    width = max((len(c.ref) for c in checks), default=10)
    lines = [f"{'stage':11} {'role':8} {'model':{width}}  {'':4}  detail"]
    for c in checks:
        lines.append(f"{c.stage:11} {c.role:8} {c.ref:{width}}  {'ok' if c.ok else 'FAIL':4}  {c.detail}")
    return "\n".join(lines)


def add_verify(models_verbs: Any) -> None:
    """Add `verify` next to the toolchain's `models build|evaluate`."""
    parser = models_verbs.add_parser(
        "verify", help="check card and sha256 of every model the pipeline serves"
    )
    parser.add_argument("--pipeline", dest="verify_pipeline", default=None, help="pipeline name or YAML path")
    parser.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    settings = args.load_settings(args.verify_pipeline)
    checks = check_models(settings.pipeline, settings.models_dir)
    print(render(checks))
    failed = [c for c in checks if not c.ok]
    if failed:
        print(
            f"\nMODEL VERIFICATION FAILED: {len(failed)} of {len(checks)} models of pipeline "
            f"{settings.pipeline.name!r} cannot be served; workers will refuse to start.",
            file=sys.stderr,
        )
        return 1
    print(f"\nall {len(checks)} models of pipeline {settings.pipeline.name!r} verified")
    return 0
