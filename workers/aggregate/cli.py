"""`ontime aggregate`: run the per-device keyword event aggregator (faust-streaming worker)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from workers.config.settings import OntimeSettings, load_settings

__all__ = ["register_cli"]


def register_cli(subparsers: Any) -> None:
    """Add the `aggregate` verb."""
    agg = subparsers.add_parser(
        "aggregate", help="per-device keyword events: P.results → P.events (faust-streaming)"
    )
    agg.add_argument(
        "--commit-interval", type=float, default=1.0, help="seconds between offset commits (default 1)"
    )
    agg.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="faust's local data directory root (default: aggregate.data_dir, .ontime/aggregate)",
    )
    agg.set_defaults(func=_cmd_aggregate)


def _cmd_aggregate(args: argparse.Namespace) -> int:
    import faust

    from workers.aggregate.app import app_id, build_app, changelog_topic, data_dir

    loader = getattr(args, "load_settings", None)
    settings: OntimeSettings = loader() if callable(loader) else load_settings(None)
    if args.data_dir is not None:
        settings = settings.model_copy(
            update={"aggregate": settings.aggregate.model_copy(update={"data_dir": args.data_dir})}
        )
    app = build_app(settings, commit_interval_s=args.commit_interval)
    spec = settings.pipeline
    print(
        f"aggregate: {spec.topics.results} → {spec.topics.events} on {settings.kafka.bootstrap_servers}, "
        f"group {app_id(settings)}, state in {changelog_topic(settings)}, "
        f"faust data in {data_dir(settings)}; "
        f"{spec.events}",
        flush=True,
    )
    level = logging.getLevelName(logging.getLogger().level)
    worker = faust.Worker(app, loglevel=level if isinstance(level, str) else "INFO")
    worker.execute_from_commandline()  # returns by SystemExit when SIGTERM/SIGINT stop the worker
    return 0
