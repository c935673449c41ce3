"""The pipeline's topics: create (idempotent, returns once every partition has a leader), list, delete.

One copy for `ontime topics`, the demo, the benchmarks and the integration tests, so every one of
them makes topics the same way, with the partitions and configs of `Topics.config_of` (results in
LogAppendTime, the control topic compacted with one partition).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from workers.config.settings import KafkaSettings, OntimeSettings
from workers.config.spec import Topics
from workers.errors import BrokerError

READY_TIMEOUT_S = 60.0


def admin_client(kafka: KafkaSettings, client_id: str = "ontime-admin", quiet: bool = False) -> AdminClient:
    """An AdminClient on the configured cluster; `quiet` keeps librdkafka's own log lines off the terminal."""
    conf: dict[str, str | int | float | bool] = {**kafka.as_librdkafka_dict(), "client.id": client_id}
    if quiet:
        conf["log_level"] = 2  # errors still reach the caller as exceptions
    return AdminClient(conf)


def pipeline_topics(topics: Topics) -> list[NewTopic]:
    """The pipeline's topics as they are created everywhere, partitions and configs from `config_of`."""
    return [
        NewTopic(
            name,
            num_partitions=topics.config_of(name)[0],
            replication_factor=topics.replication_factor,
            config=topics.config_of(name)[1],
        )
        for name in topics.all()
    ]


def create(client: AdminClient, topics: Sequence[NewTopic], timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Create the topics that do not exist yet, wait until all are ready; return the names created."""
    existing = _existing(client)
    wanted = [t for t in topics if t.topic not in existing]
    created: list[str] = []
    if wanted:
        for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
            try:
                future.result(timeout=timeout)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent create won
                    raise BrokerError(f"cannot create topic {name}: {exc.args[0].str()}") from None
    wait_ready(client, {t.topic: t.num_partitions for t in topics}, timeout)
    return created


def wait_ready(client: AdminClient, partitions: Mapping[str, int], timeout: float = READY_TIMEOUT_S) -> None:
    """Block until metadata shows each topic with its number of partitions, every one led."""
    deadline = time.monotonic() + timeout
    while True:
        meta = client.list_topics(timeout=5.0).topics
        pending = [
            name
            for name, count in partitions.items()
            if name not in meta
            or meta[name].error is not None
            or len(meta[name].partitions) != count
            or any(p.leader < 0 for p in meta[name].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics not ready after {timeout:.0f} s: {', '.join(pending)}")
        time.sleep(0.1)  # metadata has no change notification to wait on


def delete(
    client: AdminClient, names: Sequence[str], timeout: float = READY_TIMEOUT_S, wait: bool = True
) -> list[str]:
    """Delete those of `names` that exist and (`wait`) until metadata no longer lists them; return them."""
    existing = _existing(client)
    names = [n for n in names if n in existing]
    if not names:
        return []
    for name, future in client.delete_topics(names, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"cannot delete topic {name}: {exc.args[0].str()}") from None
    deadline = time.monotonic() + timeout
    while wait and (left := set(names) & _existing(client)):
        if time.monotonic() > deadline:
            raise BrokerError(f"topics still listed {timeout:.0f} s after being deleted: {sorted(left)}")
        time.sleep(0.2)  # deletion has no completion event to wait on
    return names


def create_topics(settings: OntimeSettings, timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Make every topic of the pipeline that does not exist yet; return the names it created."""
    return create(admin_client(settings.kafka), pipeline_topics(settings.pipeline.topics), timeout)


def delete_topics(settings: OntimeSettings, timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Delete the pipeline's topics that exist; return the names deleted."""
    return delete(admin_client(settings.kafka), settings.pipeline.topics.all(), timeout)


def describe_topics(settings: OntimeSettings) -> list[tuple[str, int | None, int | None]]:
    """(name, partitions, replication factor) of each pipeline topic; None where it is missing."""
    meta = admin_client(settings.kafka).list_topics(timeout=10.0).topics
    rows: list[tuple[str, int | None, int | None]] = []
    for name in settings.pipeline.topics.all():
        topic = meta.get(name)
        if topic is None or topic.error is not None:
            rows.append((name, None, None))
            continue
        replicas = max((len(p.replicas) for p in topic.partitions.values()), default=0)
        rows.append((name, len(topic.partitions), replicas))
    return rows


def _existing(client: AdminClient) -> set[str]:
    try:
        return set(client.list_topics(timeout=10.0).topics)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka: {exc.args[0].str()}") from None
