"""`ontime broker up|down|status|logs|fetch|rotate`: drive the local Kafka broker from the shell.

`--secure` picks the TLS + SCRAM broker (own state dir <cache>/broker-secure, default ports
19094/19095) and, on `up`, applies the pipeline's least-privilege ACLs (docs/security.md).
Every verb sets `func(args) -> int` (the exit code), as workers/cli/main.py expects.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workers.config.settings import BOOTSTRAP_ENV, bootstrap_from_env
from workers.errors import BrokerError
from workers.localkafka.broker import LocalBroker
from workers.localkafka.config import DEFAULT_CONTROLLER_PORT, DEFAULT_PORT, KAFKA_VERSION, port_is_free
from workers.localkafka.jars import JarFetchError, ensure_jars
from workers.localkafka.secure_cli import add_rotate, apply_pipeline_acls, describe_credentials

# The secure broker's defaults, next to the plaintext one's, so both can run at once.
SECURE_PORT = 19094
SECURE_CONTROLLER_PORT = 19095

__all__ = ["main", "register_cli"]


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `broker up|down|status|logs|fetch`; each sets `func(args) -> int` (the exit code)."""
    broker = subparsers.add_parser("broker", help="local Apache Kafka for development")
    verbs = broker.add_subparsers(dest="broker_verb", required=True, metavar="VERB")

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--state-dir", type=Path, default=None, help="pid/state/log/data (default <cache>/broker)"
        )
        parser.add_argument(
            "--secure",
            action="store_true",
            help="the TLS + SCRAM-SHA-512 broker with ACLs (state in <cache>/broker-secure)",
        )

    up = verbs.add_parser("up", help="start the local broker (idempotent)")
    common(up)
    up.add_argument("--port", type=int, default=None, help=f"client port (default {DEFAULT_PORT} if free)")
    up.add_argument("--controller-port", type=int, default=None)
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.add_argument("-q", "--quiet", action="store_true", help="print only the bootstrap servers")
    up.add_argument(
        "--exactly-once",
        action="store_true",
        help="with --secure: grant every stage its TransactionalIds (default: the exactly_once stages)",
    )
    up.set_defaults(func=_cmd_up)

    down = verbs.add_parser("down", help="stop the local broker")
    common(down)
    down.set_defaults(func=_cmd_down)

    status = verbs.add_parser("status", help="bootstrap, pid, version, topic count")
    common(status)
    status.set_defaults(func=_cmd_status)

    logs = verbs.add_parser("logs", help="print the end of the broker log")
    common(logs)
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.set_defaults(func=_cmd_logs)

    add_rotate(verbs, common)

    fetch = verbs.add_parser("fetch", help="download the Kafka jars with Maven (cached)")
    fetch.add_argument("--version", default=KAFKA_VERSION)
    fetch.set_defaults(func=_cmd_fetch)


def _say(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _cmd_up(args: argparse.Namespace) -> int:
    external = bootstrap_from_env()
    if external is not None:
        _say(
            external
            if args.quiet
            else f"using existing cluster {external} ({BOOTSTRAP_ENV}); starting nothing"
        )
        return 0
    broker = LocalBroker(args.state_dir, secure=args.secure)
    running = broker.state()
    if running is not None:
        _say(running.bootstrap if args.quiet else f"already running: {running.bootstrap} (pid {running.pid})")
        bootstrap = running.bootstrap
    else:
        port, controller_port = args.port, args.controller_port
        wanted = (DEFAULT_PORT, DEFAULT_CONTROLLER_PORT)
        if broker.secure:
            wanted = (SECURE_PORT, SECURE_CONTROLLER_PORT)
        if port is None and controller_port is None and all(port_is_free(p) for p in wanted):
            port, controller_port = wanted
        try:
            bootstrap = broker.start(port=port, controller_port=controller_port, timeout=args.timeout)
        except BrokerError as exc:  # JarFetchError too
            _say(f"broker failed to start: {exc}", err=True)
            return 1
        state = broker.state()
        if args.quiet:
            _say(bootstrap)
        elif state is not None:
            _say(
                f"broker up: {bootstrap} (pid {state.pid}, Kafka {state.version}, "
                f"ready in {state.ready_seconds:.1f} s, log {state.log_file})"
            )
    if not broker.secure:
        if not args.quiet and running is None:
            _say(f"export {BOOTSTRAP_ENV}={bootstrap}")
        return 0
    try:
        table = apply_pipeline_acls(args, broker, exactly_once=True if args.exactly_once else None)
    except BrokerError as exc:
        _say(f"ACLs not applied: {exc}", err=True)
        return 1
    if not args.quiet:
        _say(describe_credentials(broker, bootstrap, table))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.state_dir, secure=args.secure)
    state = broker.state()
    if broker.stop():
        _say(f"broker stopped (pid {state.pid if state else '?'})")
    else:
        _say("no local broker running")
    return 0


def _topic_count(conf: dict[str, str]) -> str:
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({**conf, "log_level": 2}).list_topics(timeout=5.0)
    except Exception as exc:  # KafkaException: unreachable cluster is worth reporting, not crashing on
        return f"unknown ({exc})"
    names = list(metadata.topics)
    internal = sum(name.startswith("__") for name in names)
    return f"{len(names) - internal} (+{internal} internal)"


def _cmd_status(args: argparse.Namespace) -> int:
    external = bootstrap_from_env()
    if external is not None:
        _say(f"bootstrap: {external} (existing cluster from {BOOTSTRAP_ENV})")
        _say(f"topics:    {_topic_count({'bootstrap.servers': external})}")
        return 0
    broker = LocalBroker(args.state_dir, secure=args.secure)
    state = broker.state()
    if state is None:
        _say("local broker: not running")
        return 3  # LSB "program is not running"
    _say(f"bootstrap: {state.bootstrap}")
    _say(f"pid:       {state.pid}")
    _say(f"version:   Kafka {state.version}")
    _say(f"topics:    {_topic_count(broker.client_config(bootstrap=state.bootstrap))}")
    if state.secure:
        _say(f"security:  SASL_SSL (TLS + SCRAM-SHA-512), ACLs enforced; credentials {state.credentials_dir}")
    _say(f"data:      {state.data_dir}")
    _say(f"log:       {state.log_file}")
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.state_dir, secure=args.secure)
    _say(broker.log_tail(args.lines) or f"{broker.log_file}: no log yet")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        libs = ensure_jars(args.version)
    except JarFetchError as exc:
        _say(str(exc), err=True)
        return 1
    _say(str(libs))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m workers.localkafka VERB`: the same verbs as `ontime broker VERB`."""
    parser = argparse.ArgumentParser(prog="python -m workers.localkafka")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["broker", *(argv if argv is not None else sys.argv[1:])])
    code: int = args.func(args)
    return code
