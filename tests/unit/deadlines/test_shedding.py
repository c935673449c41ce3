"""Admission rules: shed before compute, fall back when the primary would miss, drop the most urgent."""

from __future__ import annotations

import pytest

from workers.deadlines.admission import CostFn, Costs, plan
from workers.deadlines.budget import StageBudget
from workers.messages.deadline import Deadline

BUDGET = StageBudget(stage="infer", total_ms=250, stage_ms=87.5, reserve_ms=50)
NOW = 10_000.0


def line(a: float, b: float) -> CostFn:
    return lambda n: a + b * n


def deadlines(*remaining: float) -> list[Deadline]:
    return [Deadline(NOW + r) for r in remaining]


def test_everyone_with_time_runs_on_the_primary() -> None:
    p = plan(deadlines(200, 150, 120), NOW, BUDGET, Costs(primary=line(5, 1)))
    assert p.primary == [0, 1, 2]
    assert p.fallback == [] and p.shed == []
    assert p.cost_ms == pytest.approx(8)


def test_expired_members_are_shed_as_expired_with_their_overrun() -> None:
    p = plan(deadlines(-30, 200, 0), NOW, BUDGET, Costs(primary=line(5, 1)))
    shed = {s.index: s for s in p.shed}
    assert set(shed) == {0, 2}
    assert shed[0].reason == "expired" and shed[0].overrun_ms == pytest.approx(30)
    assert shed[2].reason == "expired"
    assert p.primary == [1]
    assert shed[0].detail("infer").startswith("overrun_ms=30.0; deadline passed 30.0 ms before infer")


def test_not_enough_left_for_cost_plus_reserve_is_insufficient_budget() -> None:
    # remaining 54 < cost 6 + reserve 50
    p = plan(deadlines(54, 200), NOW, BUDGET, Costs(primary=line(5, 1)))
    assert [s.index for s in p.shed] == [0]
    s = p.shed[0]
    assert s.reason == "insufficient-budget"
    assert s.overrun_ms == pytest.approx(2)
    assert "needs 6.0 ms + 50.0 ms downstream reserve, 54.0 ms left" in s.detail("infer")
    assert p.primary == [1]


def test_the_batch_shrinks_from_its_most_urgent_end_until_it_fits() -> None:
    # Cost 10 + 2n: all four need 18 + 50 = 68; the most urgent (65) cannot wait for that,
    # three need 16 + 50 = 66 and the next most urgent has 70.
    p = plan(deadlines(65, 70, 100, 100), NOW, BUDGET, Costs(primary=line(10, 2)))
    assert [s.index for s in p.shed] == [0]
    assert p.primary == [1, 2, 3]


def test_fallback_answers_when_the_primary_would_miss() -> None:
    costs = Costs(primary=line(20, 2), fallback=line(2, 0.5))
    # Primary for 2 costs 24 → needs 74; fallback for 1 + primary for 1 = 2.5 + 22 → 74.5;
    # all on the fallback: 3 → 53. The most urgent has 60.
    p = plan(deadlines(60, 300), NOW, BUDGET, costs)
    assert p.shed == []
    assert p.fallback == [0, 1]
    assert p.primary == []


def test_mixed_plan_keeps_as_many_as_possible_on_the_primary() -> None:
    costs = Costs(primary=line(1, 1), fallback=line(0.5, 0.1))
    # All primary: 1 + 4 = 5 → needs 55; the most urgent has 54.8.
    # One on the fallback: 0.6 + 1 + 3 = 4.6 → needs 54.6 ≤ 54.8.
    p = plan(deadlines(54.8, 300, 300, 300), NOW, BUDGET, costs)
    assert p.fallback == [0]
    assert p.primary == [1, 2, 3]
    assert p.cost_ms == pytest.approx(4.6)


def test_no_fallback_no_degraded_answers() -> None:
    p = plan(deadlines(60, 300), NOW, BUDGET, Costs(primary=line(20, 2)))
    assert p.fallback == []
    assert [s.index for s in p.shed] == [0]
    assert p.primary == [1]


def test_overhead_counts_against_the_budget() -> None:
    costs = Costs(primary=line(5, 0), overhead=line(0, 1))
    p = plan(deadlines(57.5, 57.5, 57.5), NOW, BUDGET, costs)
    # 3 members: 5 + 3 = 8 > 7.5 → one must go; 2 members: 5 + 2 = 7 ≤ 7.5.
    assert len(p.shed) == 1 and len(p.primary) == 2


def test_an_expired_backlog_is_skipped_without_asking_for_costs() -> None:
    def never(n: int) -> float:
        raise AssertionError("costs must not be consulted for an expired backlog")

    p = plan(deadlines(*[-1000.0 - i for i in range(500)]), NOW, BUDGET, Costs(primary=never))
    assert len(p.shed) == 500
    assert {s.reason for s in p.shed} == {"expired"}
    assert p.admitted == 0


def test_empty_batch() -> None:
    p = plan([], NOW, BUDGET, Costs(primary=line(1, 1)))
    assert p.admitted == 0 and p.shed == []
