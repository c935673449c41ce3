"""`ontime topics create|list|delete`: the pipeline's six topics, with partitions from its YAML.

Create is idempotent and returns only once every partition has a leader, so a worker or a
device started right after it never races topic creation.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from workers.config.settings import OntimeSettings
from workers.errors import BrokerError

READY_TIMEOUT_S = 30.0


def admin(settings: OntimeSettings) -> AdminClient:
    return AdminClient({**settings.kafka.as_librdkafka_dict(), "client.id": "ontime-topics"})


def create_topics(settings: OntimeSettings, timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Make every topic of the pipeline that does not exist yet; return the names it created."""
    topics = settings.pipeline.topics
    client = admin(settings)
    existing = _existing(client)
    wanted = [t for t in topics.all() if t not in existing]
    created: list[str] = []
    if wanted:
        news = [
            NewTopic(
                t,
                num_partitions=topics.config_of(t)[0],
                replication_factor=topics.replication_factor,
                config=topics.config_of(t)[1],
            )
            for t in wanted
        ]
        for name, future in client.create_topics(news, operation_timeout=timeout).items():
            try:
                future.result(timeout=timeout)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent create won
                    raise BrokerError(f"cannot create topic {name}: {exc.args[0].str()}") from None
    wait_ready(client, topics.all(), timeout)
    return created


def wait_ready(client: AdminClient, names: list[str], timeout: float = READY_TIMEOUT_S) -> None:
    """Block until metadata shows each topic with all its partitions led."""
    deadline = time.monotonic() + timeout
    while True:
        meta = client.list_topics(timeout=5.0).topics
        pending = [
            n
            for n in names
            if n not in meta
            or meta[n].error is not None
            or not meta[n].partitions
            or any(p.leader < 0 for p in meta[n].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics not ready after {timeout:.0f} s: {', '.join(pending)}")
        time.sleep(0.1)  # metadata has no change notification to wait on


def describe_topics(settings: OntimeSettings) -> list[tuple[str, int | None, int | None]]:
    """(name, partitions, replication factor) of each pipeline topic; None where it is missing."""
    meta = admin(settings).list_topics(timeout=10.0).topics
    rows: list[tuple[str, int | None, int | None]] = []
    for name in settings.pipeline.topics.all():
        topic = meta.get(name)
        if topic is None or topic.error is not None:
            rows.append((name, None, None))
            continue
        replicas = max((len(p.replicas) for p in topic.partitions.values()), default=0)
        rows.append((name, len(topic.partitions), replicas))
    return rows


def delete_topics(settings: OntimeSettings, timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Delete the pipeline's topics that exist; return the names deleted."""
    client = admin(settings)
    names = [t for t in settings.pipeline.topics.all() if t in _existing(client)]
    if not names:
        return []
    for name, future in client.delete_topics(names, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"cannot delete topic {name}: {exc.args[0].str()}") from None
    return names


def _existing(client: AdminClient) -> set[str]:
    try:
        return set(client.list_topics(timeout=10.0).topics)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka: {exc.args[0].str()}") from None


# -- CLI -----------------------------------------------------------------------------------
def register_cli(subparsers: Any) -> None:
    """Add `topics create|list|delete`; each needs `args.load_settings()` from workers.cli.main."""
    topics = subparsers.add_parser("topics", help="create, list or delete the pipeline's topics")
    verbs = topics.add_subparsers(dest="topics_verb", required=True, metavar="VERB")
    verbs.add_parser("create", help="create missing topics (idempotent), wait until ready").set_defaults(
        func=_cmd_create
    )
    verbs.add_parser("list", help="the pipeline's topics with partitions and replication").set_defaults(
        func=_cmd_list
    )
    delete = verbs.add_parser("delete", help="delete the pipeline's topics and their data")
    delete.add_argument("--yes", action="store_true", help="really delete (required)")
    delete.set_defaults(func=_cmd_delete)


def _cmd_create(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    created = create_topics(settings)
    topics = settings.pipeline.topics
    for name in topics.all():
        state = "created" if name in created else "exists"
        print(f"{name:32} {state:8} partitions={topics.partitions} rf={topics.replication_factor}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    want = settings.pipeline.topics.partitions
    missing = 0
    print(f"{'topic':32} {'partitions':>10} {'rf':>3}")
    for name, partitions, rf in describe_topics(settings):
        if partitions is None:
            missing += 1
            print(f"{name:32} {'missing':>10}")
            continue
        note = "" if partitions == want else f"  (config says {want})"
        print(f"{name:32} {partitions:>10} {rf:>3}{note}")
    return 1 if missing else 0


def _cmd_delete(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    if not args.yes:
        print(f"refusing to delete {', '.join(settings.pipeline.topics.all())} without --yes")
        return 2
    deleted = delete_topics(settings)
    print(f"deleted {len(deleted)} topics: {', '.join(deleted) or '-'}")
    return 0
