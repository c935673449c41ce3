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
        budget=BUDGET,
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


def test_take_removes_members_that_can_no_longer_make_it() -> None:
    clock = FakeClock()
    b = batcher(clock, wait=100)
    start = clock.now
    b.add(*pair(env(start + 200, offset=0)))
    b.add(*pair(env(start + 58, offset=1)))  # alone it needs 6 + 50 = 56: fine now
    b.add(*pair(env(start + 200, offset=2)))
    clock.now += 5  # now it has 53 < 56
    batch, dropped = b.take()
    assert [e.id for e in batch] == ["f0-0", "f0-2"]
    assert [(e.id, s.reason) for e, s in dropped] == [("f0-1", "insufficient-budget")]
    assert len(b) == 0 and b.close_at_ms() is None


def test_take_keeps_a_member_the_fallback_can_still_answer() -> None:
    clock = FakeClock()
    b = batcher(clock, costs=Costs(primary=line(20, 1), fallback=line(1, 0.1)), wait=100)
    b.add(*pair(env(clock.now + 55)))  # primary needs 71, fallback needs 51.1
    assert b.due()  # the primary cannot wait at all
    batch, dropped = b.take()
    assert len(batch) == 1 and dropped == []


def test_take_returns_at_most_max_size_and_reopens_with_the_rest() -> None:
    clock = FakeClock()
    b = batcher(clock, max_size=2, wait=10)
    for i in range(5):
        b.add(*pair(env(clock.now + 250, offset=i)))
    clock.now += 1
    batch, _ = b.take()
    assert [e.id for e in batch] == ["f0-0", "f0-1"]
    assert len(b) == 3
    assert b.due()  # still full
    b.take()
    b.take()
    assert len(b) == 0


def test_expired_members_are_dropped_as_expired() -> None:
    clock = FakeClock()
    b = batcher(clock)
    b.add(*pair(env(clock.now - 1)))
    batch, dropped = b.take()
    assert batch == []
    assert dropped[0][1].reason == "expired"


def test_revoked_partitions_are_discarded() -> None:
    clock = FakeClock()
    b = batcher(clock)
    b.add(*pair(env(clock.now + 250, partition=0, offset=1)))
    b.add(*pair(env(clock.now + 250, partition=1, offset=2)))
    lost = b.discard(lambda e: e.source is not None and e.source.partition == 1)
    assert [e.id for e in lost] == ["f1-2"]
    assert len(b) == 1


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
