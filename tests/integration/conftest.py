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

from tests.integration.pipeline_kit import WorkerThread, stop_all
from workers.kafka.topics import create, delete
from workers.localkafka.broker import LocalBroker
from workers.localkafka.find import FoundBroker, broker_for_run

_HERE = Path(__file__).parent

TopicFactory = Callable[..., str]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the broker: mark it so `-m "not integration"` works."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def found_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FoundBroker]:
    """The cluster named by ONTIME_KAFKA__BOOTSTRAP_SERVERS, else a broker of this session's own."""
    # A fresh state dir: never a developer's `ontime broker up`, and any free ports.
    with broker_for_run(tmp_path_factory.mktemp("kafka"), well_known_ports=False) as found:
        yield found


@pytest.fixture(scope="session")
def local_broker(found_broker: FoundBroker) -> LocalBroker | None:
    """The broker this session started, or None when ONTIME_KAFKA__BOOTSTRAP_SERVERS names a cluster."""
    return found_broker.started


@pytest.fixture(scope="session")
def kafka_bootstrap(found_broker: FoundBroker) -> str:
    """Bootstrap servers of a real Kafka: the existing cluster from the env, else a local broker."""
    if found_broker.started is not None:
        assert found_broker.started.is_running(), f"local broker died; {found_broker.started.log_tail()}"
    return found_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient on the session's cluster."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def workers() -> Iterator[list[WorkerThread]]:
    """Stage workers (threads) a test starts; all stopped at the end, every error reported, even when
    the test fails."""
    started: list[WorkerThread] = []
    yield started
    stop_all(started)


@pytest.fixture
def topic_factory(kafka_admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Call `topic_factory(partitions=3, config=None, name=None)` to get a fresh, ready topic name.

    Names carry the test's name plus a random suffix; the topics are deleted after the test.
    Creation and readiness are workers.kafka.topics', the same as `ontime topics create`.
    """
    created: list[str] = []
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-") or "topic"

    def make(partitions: int = 3, config: dict[str, str] | None = None, name: str | None = None) -> str:
        topic = name or f"{stem}-{uuid.uuid4().hex[:8]}"
        new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
        create(kafka_admin, [new], timeout=30)
        created.append(topic)
        return topic

    yield make
    if created:
        delete(kafka_admin, created, timeout=30, wait=False)
