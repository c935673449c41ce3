"""Close decisions of the deadline-aware batcher, under a fake clock."""

from __future__ import annotations

import pytest

from workers.deadlines.admission import CostFn, Costs
from workers.deadlines.batcher import DeadlineBatcher, record_deadline
from workers.deadlines.budget import StageBudget
from workers.messages.deadline import Deadline
from workers.messages.envelope import Envelope, Source

BUDGET = StageBudget(stage="infer", total_ms=250, stage_ms=87.5, reserve_ms=50)


class FakeClock:
    def __init__(self, now: float = 100_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def line(a: float, b: float) -> CostFn:
    return lambda n: a + b * n


def env(deadline_ms: float, partition: int = 0, offset: int = 0) -> Envelope:
    return Envelope(
        id=f"f{partition}-{offset}",
        key=b"dev",
        payload=b"",
        content_type="application/x-ontime-tensor;dtype=float32;shape=1x1",
        deadline=Deadline(deadline_ms),
        captured_ms=None,
        taken_ms=0.0,
        source=Source("t", partition, offset, 0),
    )


def pair(e: Envelope) -> tuple[Envelope, Deadline]:
    return e, e.deadline


def batcher(
    clock: FakeClock, costs: Costs | None = None, max_size: int = 4, wait: float = 10
) -> DeadlineBatcher[Envelope]:
    return DeadlineBatcher(
        budget=lambda: BUDGET,
        costs=costs or Costs(primary=line(5, 1)),
        max_size=max_size,
        max_wait_ms=wait,
        clock=clock,
    )


def test_empty_batcher_has_nothing_to_close() -> None:
    clock = FakeClock()
    b = batcher(clock)
    assert b.close_at_ms() is None
    assert not b.due()
    assert b.wait_ms(idle_ms=100) == 100


def test_with_time_to_spare_it_waits_max_wait() -> None:
    clock = FakeClock()
    b = batcher(clock)
    b.add(*pair(env(clock.now + 250)))
    assert b.close_at_ms() == clock.now + 10
    clock.now += 9.9
    assert not b.due()
    assert b.wait_ms() == pytest.approx(0.1)
    clock.now += 0.1
    assert b.due()


def test_the_most_urgent_member_closes_the_batch_early() -> None:
    clock = FakeClock()
    b = batcher(clock, wait=100)
    start = clock.now
    b.add(*pair(env(start + 250)))
    b.add(*pair(env(start + 60)))  # 60 − (5 + 2) − 50 = 3 ms to wait at most
    assert b.close_at_ms() == pytest.approx(start + 3)
    clock.now += 2
    assert not b.due()
    clock.now += 1
    assert b.due()


def test_a_bigger_batch_is_predicted_slower_so_it_closes_sooner() -> None:
    clock = FakeClock()
    b = batcher(clock, costs=Costs(primary=line(2, 3)), wait=100, max_size=8)
    start = clock.now
    b.add(*pair(env(start + 80)))
    first = b.close_at_ms()
    b.add(*pair(env(start + 200)))
    second = b.close_at_ms()
    assert first == pytest.approx(start + 80 - 5 - 50)
    assert second == pytest.approx(start + 80 - 8 - 50)


def test_measured_costs_move_the_close_time() -> None:
    clock = FakeClock()
    slow = [5.0]

    def measured(n: int) -> float:
        return slow[0] + n

    b = batcher(clock, costs=Costs(primary=measured), wait=100)
    b.add(*pair(env(clock.now + 100)))
    before = b.close_at_ms()
    slow[0] = 25.0  # the stage got slower
    after = b.close_at_ms()
    assert before is not None and after is not None
    assert after == pytest.approx(before - 20)


def test_a_full_batch_is_due_at_once() -> None:
    clock = FakeClock()
    b = batcher(clock, max_size=3, wait=100)
    for i in range(3):
        b.add(*pair(env(clock.now + 250, offset=i)))
    assert b.full()
    assert b.due()
    assert b.wait_ms() == 0


def test_drain_returns_every_member_in_arrival_order_and_empties_the_batcher() -> None:
    clock = FakeClock()
    b = batcher(clock, wait=100)
    for i in (2, 0, 1):
        b.add(*pair(env(clock.now + 50 + 100 * i, offset=i)))
    assert [e.id for e in b.drain()] == ["f0-2", "f0-0", "f0-1"]
    assert len(b) == 0 and b.close_at_ms() is None and b.drain() == []


def test_drain_keeps_hopeless_members_for_the_stage_to_shed() -> None:
    clock = FakeClock()
    b = batcher(clock)
    b.add(*pair(env(clock.now - 1, offset=0)))
    b.add(*pair(env(clock.now + 250, offset=1)))
    assert [e.id for e in b.drain()] == ["f0-0", "f0-1"]  # admission is the stage's job


def test_a_measured_reserve_moves_the_close_time() -> None:
    clock = FakeClock()
    reserve = [50.0]
    b = DeadlineBatcher(
        budget=lambda: BUDGET.with_reserve(reserve[0]),
        costs=Costs(primary=line(5, 1)),
        max_size=4,
        max_wait_ms=100,
        clock=clock,
    )
    b.add(*pair(env(clock.now + 100)))
    assert b.close_at_ms() == pytest.approx(clock.now + 100 - 6 - 50)
    reserve[0] = 20.0  # downstream measured faster than its share
    assert b.close_at_ms() == pytest.approx(clock.now + 100 - 6 - 20)


class Record:
    """The two accessors of a consumed record that `record_deadline` reads."""

    def __init__(self, headers: list[tuple[str, bytes]], ts: int) -> None:
        self._headers, self._ts = headers, ts

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


def test_record_deadline_reads_the_header_and_clamps_it() -> None:
    assert record_deadline(Record([("ontime-deadline-ms", b"1200")], 1_000), 250, 50, 1_000).at_ms == 1_200
    assert record_deadline(Record([("ontime-deadline-ms", b"9999")], 1_000), 250, 50, 1_000).at_ms == 1_300
    assert record_deadline(Record([], 1_000), 250, 50, 1_010).at_ms == 1_250
    assert record_deadline(Record([], -1), 250, 50, 1_010).at_ms == 1_260


def test_members_that_will_be_shed_do_not_hurry_the_batch() -> None:
    clock = FakeClock()
    b = batcher(clock, max_size=8, wait=10)
    for i in range(3):
        b.add(*pair(env(clock.now - 100, offset=i)))  # an expired backlog
    b.add(*pair(env(clock.now + 52, offset=3)))  # 52 − 50 < 6 needed: hopeless too
    assert b.close_at_ms() == clock.now + 10  # waits to fill up, like any relaxed batch
    assert not b.due()
    b.add(*pair(env(clock.now + 60, offset=4)))  # viable: must start within 60 − 6 − 50 = 4 ms
    assert b.close_at_ms() == pytest.approx(clock.now + 4)


def test_record_deadline_survives_header_names_that_are_not_utf8() -> None:
    from tests.unit.messages.record import Record
    from workers.deadlines.batcher import record_deadline
    from workers.messages import headers as h

    record = Record(SystemError("header name is not UTF-8"), ts=1_000_000_000_000)
    deadline = record_deadline(record, 250.0, 50.0, now=1_000_000_000_000)
    assert deadline.at_ms == 1_000_000_000_250  # as if it had no deadline header
    assert record.headers() is not None and record.headers()[0][0] == h.UNREADABLE  # type: ignore[index]
