"""One reader of `P.control` per worker: each record goes to the route that owns its key prefix,
garbage and tombstones go nowhere, and plans read while catching up wait for `caught_up`."""

from __future__ import annotations

from confluent_kafka import Message

from workers.config.settings import load_settings
from workers.deadlines.reserve import LATENCY_PREFIX, LatencyBoard, LatencyReport
from workers.loop.control import BoardFeed, ControlFollower
from workers.loop.plans import PLAN_PREFIX


class Taken:
    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.caught_up_calls = 0

    def take(self, key: bytes, value: bytes) -> None:
        self.records.append(key)

    def caught_up(self) -> None:
        self.caught_up_calls += 1


def test_records_are_routed_by_key_prefix_and_garbage_is_skipped() -> None:
    board = LatencyBoard()
    feed, plans = BoardFeed(board), Taken()
    follower = ControlFollower(load_settings("acoustic"), {LATENCY_PREFIX: feed, PLAN_PREFIX: plans})
    report = LatencyReport("infer", "r1", 12.0, 5.0, 40, 1000.0)
    for key, value in [
        (report.key(), report.encode()),
        (b"model/infer", b"{}"),
        (b"latency/infer/r2", b"not json"),  # skipped, counted
        (b"ack/infer/r1", b"{}"),  # nobody's: the worker does not read answers
        (b"model/infer", None),  # a tombstone
        (None, b"{}"),
    ]:
        follower._dispatch(Message(topic="acoustic.control", key=key, value=value))
    assert plans.records == [b"model/infer"]
    assert feed.skipped == 1
    assert board.measured_ms("infer", now=1000.0) == 12.0
