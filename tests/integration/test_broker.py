"""The local broker behaves like Kafka where ontime relies on it: delivery, group offsets, lag."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from workers.config.settings import BOOTSTRAP_ENV
from workers.localkafka.broker import BrokerStartError, LocalBroker
from workers.localkafka.config import free_port

TopicFactory = Callable[..., str]


def _producer(bootstrap: str) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 2}
    )


def _consumer(bootstrap: str, group: str, **extra: object) -> Consumer:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    config.update(extra)
    return Consumer(config)


def _produce_all(producer: Producer, records: list[tuple[str, int | None, bytes, bytes]]) -> list[Message]:
    """Produce (topic, partition, key, value) records and return their delivery reports, all checked."""
    reports: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            reports.append(msg)

    for topic, partition, key, value in records:
        kwargs: dict[str, object] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, headers=[("ontime-id", value)], **kwargs)
    assert producer.flush(30) == 0, "messages still queued after flush"
    assert errors == []
    assert len(reports) == len(records)
    return reports


def _consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list[Message]:
    """Poll until `count` messages arrive (failing on any consumer error or on the timeout)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg)
    assert len(got) == count, f"consumed {len(got)} of {count} messages in {timeout} s"
    return got


def test_round_trip_with_idempotent_producer(kafka_bootstrap: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=3)
    sent = [(topic, None, f"dev-{i % 5}".encode(), f"frame-{i}".encode()) for i in range(30)]
    reports = _produce_all(_producer(kafka_bootstrap), sent)
    partition_of_key = {msg.key(): msg.partition() for msg in reports}
    assert all(partition_of_key[msg.key()] == msg.partition() for msg in reports)

    consumer = _consumer(kafka_bootstrap, f"g-{uuid.uuid4().hex}")
    consumer.subscribe([topic])
    try:
        got = _consume(consumer, len(sent))
    finally:
        consumer.close()

    assert sorted(msg.value() for msg in got) == sorted(value for *_, value in sent)
    for msg in got:
        assert msg.headers() == [("ontime-id", msg.value())]
        assert msg.partition() == partition_of_key[msg.key()]
    for key in partition_of_key:  # per-key order is production order
        expected = [value for _, _, k, value in sent if k == key]
        assert [msg.value() for msg in got if msg.key() == key] == expected


@pytest.mark.parametrize("protocol", ["classic", "consumer"])  # "consumer" is KIP-848, GA in Kafka 4
def test_second_consumer_resumes_from_committed_offset(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory: TopicFactory, protocol: str
) -> None:
    topic = topic_factory(partitions=1)
    _produce_all(_producer(kafka_bootstrap), [(topic, 0, b"k", f"m{i}".encode()) for i in range(10)])
    group = f"g-{uuid.uuid4().hex}"

    first = _consumer(kafka_bootstrap, group, **{"group.protocol": protocol})
    first.subscribe([topic])
    try:
        head = _consume(first, 4)
        first.commit(message=head[-1], asynchronous=False)
    finally:
        first.close()
    assert [msg.value() for msg in head] == [b"m0", b"m1", b"m2", b"m3"]

    second = _consumer(kafka_bootstrap, group, **{"group.protocol": protocol})
    second.subscribe([topic])
    try:
        rest = _consume(second, 6)
        committed = second.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        second.close()
    assert committed[0].offset == 4
    described = kafka_admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert described.type.name == protocol.upper()
    assert [msg.offset() for msg in rest] == list(range(4, 10))
    assert [msg.value() for msg in rest] == [f"m{i}".encode() for i in range(4, 10)]


def _group_lag(admin: AdminClient, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Lag per partition as an autoscaler computes it: end offset minus committed (or log start)."""
    request = [ConsumerGroupTopicPartitions(group)]
    listed = admin.list_consumer_group_offsets(request)[group].result(timeout=10)
    committed = {tp.partition: tp.offset for tp in listed.topic_partitions if tp.topic == topic}
    specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    ends = {tp.partition: f.result(timeout=10).offset for tp, f in admin.list_offsets(specs).items()}
    return {p: ends[p] - max(committed.get(p, 0), 0) for p in range(partitions)}


def test_end_offsets_and_lag(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=3)
    counts = {0: 5, 1: 3, 2: 0}
    producer = _producer(kafka_bootstrap)
    _produce_all(
        producer, [(topic, p, b"k", f"{p}-{i}".encode()) for p, n in counts.items() for i in range(n)]
    )

    group = f"g-{uuid.uuid4().hex}"
    consumer = _consumer(kafka_bootstrap, group)
    try:
        for p, n in counts.items():
            assert consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) == (0, n)
        consumer.commit(
            offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 3)], asynchronous=False
        )
        assert _group_lag(kafka_admin, group, topic, 3) == {0: 3, 1: 0, 2: 0}

        _produce_all(producer, [(topic, 1, b"k", b"late-1"), (topic, 1, b"k", b"late-2")])
        assert consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (0, 5)
        assert _group_lag(kafka_admin, group, topic, 3) == {0: 3, 1: 2, 2: 0}
    finally:
        consumer.close()


def test_broker_state_is_visible_to_other_processes(local_broker: LocalBroker | None) -> None:
    if local_broker is None:
        pytest.skip(f"{BOOTSTRAP_ENV} names an existing cluster; no local broker to inspect")
    again = LocalBroker(local_broker.state_dir)
    state = again.state()
    assert state is not None and again.is_running()
    assert again.start() == state.bootstrap  # idempotent: no second JVM
    assert again.state() == state

    status = _cli("status", "--state-dir", str(local_broker.state_dir))
    assert status.returncode == 0, status.stderr
    assert f"bootstrap: {state.bootstrap}" in status.stdout
    assert f"pid:       {state.pid}" in status.stdout
    assert "Kafka 4.1.1" in status.stdout


def test_cli_up_down_across_processes_keeps_topics(tmp_path: Path) -> None:
    if os.environ.get(BOOTSTRAP_ENV):
        pytest.skip(f"{BOOTSTRAP_ENV} names an existing cluster; `broker up` would start nothing")
    state_dir = str(tmp_path / "broker")
    port = free_port()
    ports = ("--port", str(port), "--controller-port", str(free_port(exclude=frozenset({port}))))
    try:
        up = _cli("up", "--state-dir", state_dir, "--quiet", *ports)
        assert up.returncode == 0, up.stderr
        bootstrap = up.stdout.strip()
        again = _cli("up", "--state-dir", state_dir)
        assert again.returncode == 0 and f"already running: {bootstrap}" in again.stdout

        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("kept", 2, 1)])["kept"].result(timeout=30)
        pid = LocalBroker(Path(state_dir)).state()
        assert pid is not None

        down = _cli("down", "--state-dir", state_dir)
        assert down.returncode == 0 and f"stopped (pid {pid.pid})" in down.stdout
        assert _process_gone(pid.pid)
        assert _cli("status", "--state-dir", state_dir).returncode == 3

        up = _cli("up", "--state-dir", state_dir, "--quiet", *ports)
        assert up.returncode == 0, up.stderr
        topics = AdminClient({"bootstrap.servers": up.stdout.strip()}).list_topics(timeout=10).topics
        assert "kept" in topics and len(topics["kept"].partitions) == 2
    finally:
        _cli("down", "--state-dir", state_dir)
    assert not LocalBroker(Path(state_dir)).is_running()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != BOOTSTRAP_ENV}
    return subprocess.run(
        [sys.executable, "-m", "workers.localkafka", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def _process_gone(pid: int) -> bool:
    """True if `pid` has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def test_a_failed_start_reports_kafkas_own_error(tmp_path: Path, local_broker: LocalBroker | None) -> None:
    if local_broker is None:
        pytest.skip(f"{BOOTSTRAP_ENV} names an existing cluster; java may not be here")
    broker = LocalBroker(tmp_path)
    running = local_broker.state()
    assert running is not None
    libs = Path(running.libs_dir)
    with socket.socket() as taken:  # bound after our free-port check, as a racing program would
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        java = shutil.which("java")
        assert java is not None
        with pytest.raises(BrokerStartError) as failed:
            broker._start_once(java, libs, tmp_path / "data", port, free_port(), timeout=120)
    message = str(failed.value)
    assert "Kafka exited with code 1" in message
    assert f"failed to bind to 127.0.0.1:{port}: Address already in use" in message
    assert not broker.is_running() and not broker.pid_file.exists()
