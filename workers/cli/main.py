"""`ontime`: one command with a verb per job (worker, topics, broker, devices, demo, models, ...).

Global flags pick the pipeline and override any setting: `--set worker.poll_timeout_ms=50`
(nested with dots) beats the `ONTIME_*` environment, which beats the pipeline YAML. Verbs whose
module is not installed are simply absent, so `ontime --help` needs neither torch nor Kafka.
Every verb sets `func(args) -> int` and reads its settings through `args.load_settings()`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from functools import partial
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from workers.cli import topics
from workers.config.settings import BOOTSTRAP_ENV, OntimeSettings, load_settings, merge_overrides
from workers.errors import ConfigError, OntimeError
from workers.telemetry.logs import setup_logging

# Entry-point group of verbs that live outside workers/ (the model toolchain's `models`).
PLUGIN_GROUP = "ontime.cli"
# Modules that add their own verbs with `register_cli(subparsers)`, in help order.
VERB_MODULES = (
    "workers.localkafka.cli",
    "workers.tools.devices",
    "workers.tools.demo",
    "workers.tools.report",
    "workers.tools.bench",
    "workers.tools.dlq",
    "workers.tools.offsets",
    "workers.aggregate.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ontime",
        description="Streaming ML inference on Kafka that answers on time.",
        epilog="Settings: pipeline YAML < ONTIME_* environment (__ nests) < --set/--bootstrap flags.",
    )
    parser.add_argument("--pipeline", default=None, help="pipeline name (acoustic) or path to its YAML")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set pipeline.budget_ms=500 --set kafka.extra.linger.ms=0",
    )
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (kafka.bootstrap_servers)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (worker.log_level)")
    parser.add_argument("--log-json", action="store_true", help="JSON log lines (worker.log_json)")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_worker(verbs)
    topics.register_cli(verbs)
    for name in VERB_MODULES:
        module = _optional(name)
        if module is not None:
            module.register_cli(verbs)
    _add_models(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.bootstrap:
        # Also for verbs that load settings themselves or start subprocesses (demo).
        os.environ[BOOTSTRAP_ENV] = args.bootstrap
    args.load_settings = partial(settings_from_args, args)
    setup_logging(args.log_level or "INFO", args.log_json)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except ConfigError as exc:
        print(f"ontime: {exc}", file=sys.stderr)
        return 2
    except OntimeError as exc:
        print(f"ontime: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def settings_from_args(
    args: argparse.Namespace, pipeline: str | None = None, extra: dict[str, Any] | None = None
) -> OntimeSettings:
    """Settings with the global flags applied; `pipeline` and `extra` come from the verb."""
    overrides = parse_overrides(args.overrides)
    if args.bootstrap:
        merge_overrides(overrides, {"kafka": {"bootstrap_servers": args.bootstrap}})
    if args.log_level:
        merge_overrides(overrides, {"worker": {"log_level": args.log_level}})
    if args.log_json:
        merge_overrides(overrides, {"worker": {"log_json": True}})
    merge_overrides(overrides, extra or {})
    return load_settings(pipeline or args.pipeline, overrides)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["a.b=1", "kafka.extra.linger.ms=0"]` → `{"a": {"b": "1"}, "kafka": {"extra": {"linger.ms": "0"}}}`.

    Values stay strings (pydantic converts them as it does environment variables); `null`
    means None. Under `kafka.extra` the rest of the key is one librdkafka key, dots and all.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. worker.poll_timeout_ms=50")
        parts = key.split(".")
        if parts[:2] == ["kafka", "extra"] and len(parts) > 2:
            parts = ["kafka", "extra", ".".join(parts[2:])]
        nested: Any = None if value.strip().lower() in ("null", "none") else value
        for part in reversed(parts):
            nested = {part: nested}
        merge_overrides(out, nested)
    return out


def _optional(name: str) -> ModuleType | None:
    """Import a verb module, or None if that very module is not part of this install."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


# -- worker --------------------------------------------------------------------------------
def _add_worker(verbs: Any) -> None:
    worker = verbs.add_parser("worker", help="run a stage (or several, chained in memory) as a Kafka worker")
    worker.add_argument(
        "--stage", required=True, help="preprocess, infer, postprocess, or a consecutive comma list"
    )
    worker.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and health (0: any)")
    worker.add_argument(
        "--shadow",
        metavar="VERSION",
        default=None,
        help="run VERSION of the stage's model as a shadow beside the serving one: own group, P.shadow only",
    )
    worker.set_defaults(func=_cmd_worker)


def _cmd_worker(args: argparse.Namespace) -> int:
    from workers.loop.worker import StageWorker, install_signal_handlers
    from workers.stages.chain import build_stages, parse_stages

    extra = {"worker": {"metrics_port": args.metrics_port}} if args.metrics_port is not None else {}
    settings = args.load_settings(extra=extra)
    setup_logging(settings.worker.log_level, settings.worker.log_json)
    names = parse_stages(args.stage)
    if args.shadow is not None:
        from workers.tools.shadow import run_shadow

        return run_shadow(settings, names, args.shadow)
    stages = build_stages(settings.pipeline, names, settings.models_dir)
    worker = StageWorker(settings, stages, build_telemetry(settings, names))
    install_signal_handlers(worker)
    worker.run()
    return 0


def build_telemetry(settings: OntimeSettings, stages: list[str]) -> Any:
    """Tracing/metrics/health from workers.telemetry.fanout when installed, else the no-op."""
    module = _optional("workers.telemetry.fanout")
    if module is None:
        from workers.telemetry.hooks import NOOP

        return NOOP
    return module.build_telemetry(settings, stages)


# -- models --------------------------------------------------------------------------------
def _add_models(verbs: Any) -> None:
    from workers.cli.models import add_verify
    from workers.cli.rollout import add_lifecycle

    toolchain = _plugin("models")
    if toolchain is not None:
        models_verbs = toolchain(verbs)
    else:
        models = verbs.add_parser("models", help="verify the ONNX models a pipeline serves")
        models_verbs = models.add_subparsers(dest="models_command", required=True)
    add_verify(models_verbs)
    add_lifecycle(models_verbs)


def _plugin(name: str) -> Callable[[Any], Any] | None:
    """`register_cli` of the `ontime.cli` entry point `name`, or None if its package is not installed."""
    for point in entry_points(group=PLUGIN_GROUP, name=name):
        try:
            register: Callable[[Any], Any] = point.load()
        except ModuleNotFoundError as exc:
            if exc.name is not None and point.module.startswith(exc.name):
                return None  # the plugin's own package is absent; a missing dependency still raises
            raise
        return register
    return None


if __name__ == "__main__":
    raise SystemExit(main())
