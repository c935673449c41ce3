"""Integration fixtures: one real Kafka broker per test session, and throwaway topics per test.

Set ONTIME_KAFKA__BOOTSTRAP_SERVERS to run against an existing cluster instead of starting one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.pipeline_kit import wait_for
from workers.localkafka.broker import LocalBroker, bootstrap_from_env

_HERE = Path(__file__).parent

TopicFactory = Callable[..., str]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the broker: mark it so `-m "not integration"` works."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The broker this session started, or None when ONTIME_KAFKA__BOOTSTRAP_SERVERS names a cluster."""
    if bootstrap_from_env() is not None:
        yield None
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalBroker | None) -> str:
    """Bootstrap servers of a real Kafka: the existing cluster from the env, else a local broker."""
    if local_broker is None:
        external = bootstrap_from_env()
        assert external is not None
        return external
    bootstrap = local_broker.bootstrap
    assert bootstrap is not None, f"local broker died; {local_broker.log_tail()}"
    return bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient on the session's cluster."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def topic_factory(kafka_admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Call `topic_factory(partitions=3, config=None, name=None)` to get a fresh, ready topic name.

    Names carry the test's name plus a random suffix; the topics are deleted after the test.
    """
    created: list[str] = []
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-") or "topic"

    def make(partitions: int = 3, config: dict[str, str] | None = None, name: str | None = None) -> str:
        topic = name or f"{stem}-{uuid.uuid4().hex[:8]}"
        new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
        kafka_admin.create_topics([new], operation_timeout=30)[topic].result(timeout=30)
        created.append(topic)
        _wait_for_leaders(kafka_admin, topic, partitions, timeout=30.0)
        return topic

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int, timeout: float) -> None:
    """Block until metadata shows every partition of `topic` with a leader."""

    def ready() -> bool:
        meta = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        return (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        )

    wait_for(ready, timeout, f"topic {topic} with {partitions} partitions and leaders")
