"""When a worker gives up on its consumer: all partitions lost, none back for `after_s`, and the
broker answering; an assignment (even an empty one) stands the watch down."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from workers.loop.rejoin import REJOIN_MIN_S, RejoinWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Broker:
    def __init__(self, up: bool) -> None:
        self.up = up

    def list_topics(self, topic: str, timeout: float) -> Any:
        if not self.up:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return object()


def test_due_only_after_the_wait_and_only_while_the_broker_answers() -> None:
    clock = Clock()
    watch = RejoinWatch(session_timeout_ms=10_000, clock=clock)
    assert watch.after_s == REJOIN_MIN_S
    up, down = Broker(True), Broker(False)
    assert not watch.due(up, "t")  # nothing lost
    watch.lost_everything()
    clock.now += watch.after_s - 1
    assert not watch.due(up, "t")
    clock.now += 2
    assert not watch.due(down, "t")  # the broker is still away: a new consumer would not help
    assert not watch.due(up, "t")  # back: the consumer gets a session timeout to rejoin by itself
    clock.now += watch.grace_s / 2
    assert not watch.due(down, "t")  # away again: the grace starts over
    clock.now += watch.grace_s / 2
    assert not watch.due(up, "t")
    clock.now += watch.grace_s
    assert watch.due(up, "t")
    assert watch.replaced() == watch.after_s + 1 + 2 * watch.grace_s
    assert not watch.due(up, "t")  # the fresh consumer gets the same time
    clock.now += watch.after_s + 1
    assert not watch.due(up, "t")
    clock.now += watch.grace_s
    assert watch.due(up, "t")


def test_an_assignment_stands_the_watch_down_and_a_long_session_waits_longer() -> None:
    clock = Clock()
    watch = RejoinWatch(session_timeout_ms=45_000, clock=clock)
    assert watch.after_s == 135.0
    watch.lost_everything()
    watch.assigned()
    clock.now += 1000
    assert not watch.due(Broker(True), "t")
