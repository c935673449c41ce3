"""`ontime aggregate`: run the per-device keyword event aggregator (faust-streaming worker)."""

from __future__ import annotations

import argparse
import logging
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
    agg.set_defaults(func=_cmd_aggregate)


def _cmd_aggregate(args: argparse.Namespace) -> int:
    import faust

    from workers.aggregate.app import app_id, build_app, changelog_topic

    loader = getattr(args, "load_settings", None)
    settings: OntimeSettings = loader() if callable(loader) else load_settings(None)
    app = build_app(settings, commit_interval_s=args.commit_interval)
    spec = settings.pipeline
    print(
        f"aggregate: {spec.topics.results} → {spec.topics.events} on {settings.kafka.bootstrap_servers}, "
        f"group {app_id(settings)}, state in {changelog_topic(settings)}; {spec.events}",
        flush=True,
    )
    level = logging.getLevelName(logging.getLogger().level)
    worker = faust.Worker(app, loglevel=level if isinstance(level, str) else "INFO")
    worker.execute_from_commandline()  # returns by SystemExit when SIGTERM/SIGINT stop the worker
    return 0
