"""The librdkafka keys that make a stage worker at-least-once, fast, and cooperative."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer

from workers.config.settings import OntimeSettings, load_settings
from workers.kafka.clients import consumer_config, producer_config


def _settings(**kafka: object) -> OntimeSettings:
    overrides = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1", **kafka},
        "worker": {"session_timeout_ms": 12000},
    }
    return load_settings("acoustic", overrides)


def test_consumer_stores_offsets_only_by_hand_and_commits_them_automatically() -> None:
    conf = consumer_config(_settings(), "infer")
    assert conf["group.id"] == "ontime.acoustic.infer"
    assert conf["enable.auto.offset.store"] is False
    assert conf["enable.auto.commit"] is True
    assert 0 < int(conf["auto.commit.interval.ms"]) <= 5000
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["group.protocol"] == "classic"
    assert conf["session.timeout.ms"] == 12000
    assert conf["max.poll.interval.ms"] == 300_000
    # An empty fetch waits briefly: short enough for a resumed partition, long enough not to spin.
    assert 10 <= int(conf["fetch.wait.max.ms"]) <= 50
    # A partition whose fetch queue overflowed in an overload must not sit out a second after it.
    assert int(conf["fetch.queue.backoff.ms"]) <= 50
    assert conf["bootstrap.servers"] == "127.0.0.1:1"


def test_a_stage_consumer_gives_up_a_dead_member_in_seconds_with_three_heartbeats_per_session() -> None:
    defaults = consumer_config(
        load_settings("acoustic", {"kafka": {"bootstrap_servers": "127.0.0.1:1"}}), "infer"
    )
    assert defaults["session.timeout.ms"] == 10_000  # a kill -9 costs 10 s, not librdkafka's 45
    assert defaults["heartbeat.interval.ms"] == 3_000
    short = consumer_config(_settings(), "infer")  # session 12 s: the 3 s heartbeat stays
    assert short["heartbeat.interval.ms"] == 3_000
    shortest = load_settings(
        "acoustic",
        {"kafka": {"bootstrap_servers": "127.0.0.1:1"}, "worker": {"session_timeout_ms": 6000}},
    )
    assert consumer_config(shortest, "infer")["heartbeat.interval.ms"] == 2000  # capped at a third
    Consumer({**defaults, "group.id": "x"}).close()  # librdkafka accepts the pair


def test_kip848_protocol_drops_classic_only_keys() -> None:
    conf = consumer_config(_settings(group_protocol="consumer"), "preprocess")
    assert conf["group.protocol"] == "consumer"
    for key in ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"):
        assert key not in conf
    assert conf["enable.auto.offset.store"] is False


def test_extra_keys_pass_through_but_cannot_break_at_least_once() -> None:
    settings = _settings(extra={"enable.auto.offset.store": "true", "fetch.wait.max.ms": "1", "acks": "1"})
    conf = consumer_config(settings, "infer")
    assert conf["enable.auto.offset.store"] is False
    assert conf["fetch.wait.max.ms"] == "1"
    assert producer_config(settings, "infer")["acks"] == "all"


def test_producer_is_idempotent_with_acks_all_and_short_linger() -> None:
    conf = producer_config(_settings(), "postprocess")
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert 0 <= int(conf["linger.ms"]) <= 2


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_librdkafka_accepts_every_key(protocol: str) -> None:
    """Building the clients validates the keys; neither connects until it is used."""
    settings = _settings(group_protocol=protocol)
    Consumer(consumer_config(settings, "infer")).close()
    Producer(producer_config(settings, "infer"))


def test_static_membership_is_off_unless_an_instance_id_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "group.instance.id" not in consumer_config(_settings(), "infer")
    monkeypatch.setenv("ONTIME_KAFKA__GROUP_INSTANCE_ID", "ontime-infer-7d9f-abcde")
    settings = _settings()
    assert consumer_config(settings, "infer")["group.instance.id"] == "ontime-infer-7d9f-abcde"
    assert "group.instance.id" not in producer_config(settings, "infer")


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_librdkafka_accepts_a_static_member(protocol: str) -> None:
    settings = _settings(group_protocol=protocol, group_instance_id="ontime-infer-0")
    Consumer(consumer_config(settings, "infer")).close()


def test_the_static_member_id_names_the_replica_for_transactions() -> None:
    from workers.kafka.clients import replica_id

    assert replica_id(_settings(group_instance_id="ontime-infer-7d9f-abcde")) == "ontime-infer-7d9f-abcde"
