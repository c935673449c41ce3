"""`ontime bench goodput` without a broker: row arithmetic, accounting, /proc parsing, tables, CLI plan."""

from __future__ import annotations

import argparse
import io
import os
from dataclasses import replace
from pathlib import Path

import pytest

from workers.config.settings import load_settings
from workers.messages import headers as h
from workers.tools.bench.goodput import FULL, QUICK, plan_from_args, register_cli, run_goodput
from workers.tools.bench.goodput_report import (
    plot,
    render_capacity,
    render_late,
    render_loads,
    render_ratios,
    render_stage_times,
)
from workers.tools.bench.goodput_rows import BURST, CAPACITY, Row, medians
from workers.tools.bench.harness import BenchError, Seen, late_count, private_pipeline, record_key
from workers.tools.bench.usage import cpu_ms, cpu_stall_us, peak_rss_mb

BUDGET = 250.0


def result(captured: int, completed: int, deadline: int | None = None, appended: int | None = None) -> Seen:
    return Seen(
        "result",
        received_ms=float(completed + 5),
        captured_ms=captured,
        deadline_ms=deadline,
        completed_ms=completed,
        appended_ms=appended,
    )


def test_peer_results_are_judged_against_capture_plus_budget() -> None:
    row = Row("quix", "1×", 1.0, 100.0)
    row.add(result(1000, 1250), BUDGET)  # exactly at the deadline: on time
    row.add(result(1000, 1251), BUDGET)  # one millisecond past it
    assert (row.results, row.on_time) == (2, 1)


def test_ontime_results_are_judged_against_their_own_deadline() -> None:
    row = Row("ontime split", "1×", 1.0, 100.0)
    row.add(result(1000, 1100, deadline=1090), BUDGET)
    assert (row.results, row.on_time) == (1, 0)


def test_late_records_with_a_count_stand_for_that_many_frames() -> None:
    row = Row("ontime split", "4×", 4.0, 100.0, sent=13)
    row.add(result(0, 10, deadline=250), BUDGET)
    row.add(Seen("late", 0.0, reason="insufficient-budget", stage="preprocess"), BUDGET)
    row.add(Seen("late", 0.0, reason="skipped", stage="preprocess", count=10), BUDGET)
    row.add(Seen("late", 0.0, reason="missed", stage="postprocess"), BUDGET)
    assert (row.results, row.late, row.missed, row.dlq) == (1, 12, 1, 0)
    assert row.exact
    assert row.late_by == {
        "preprocess:insufficient-budget": 1,
        "preprocess:skipped": 10,
        "postprocess:missed": 1,
    }
    assert "ontime split 4×: preprocess:skipped=10" in render_late([row])
    assert row.shed_pct == pytest.approx(100.0 * 12 / 13)
    assert row.on_time_pct == pytest.approx(50.0)  # 1 of 2 admitted (1 result + 1 missed)


def test_stage_times_of_results_are_summed_per_stage_over_repeats() -> None:
    rows = []
    for queue in (2.0, 40.0):  # two repeats
        row = Row("ontime split", "0.25×", 0.25, 100.0, stall_pct=queue)
        seen = replace(result(0, 50, deadline=250), stages=(("preprocess", queue, 1.0), ("infer", 3.0, 0.5)))
        row.add(seen, BUDGET)
        row.add(Seen("late", 0.0, reason="expired", stage="infer"), BUDGET)  # a late record has none
        rows.append(row)
    assert rows[0].queue_ms == {"preprocess": [2.0], "infer": [3.0]}
    assert rows[0].as_json()["compute_ms"]["infer"]["p50"] == pytest.approx(0.5)
    text = render_stage_times(rows)
    assert "ontime split 0.25×: preprocess 21.0/" in text  # median of both repeats' 2 and 40 ms
    assert "infer 3.0/3.0 + 0.5/0.5" in text
    assert "CPU pressure 21 %" in text


def test_cpu_pressure_is_read_from_psi(tmp_path: Path) -> None:
    (tmp_path / "pressure").mkdir()
    (tmp_path / "pressure" / "cpu").write_text(
        "some avg10=70.46 avg60=82.11 avg300=70.40 total=5533553588\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    assert cpu_stall_us(tmp_path) == 5533553588.0
    assert cpu_stall_us(tmp_path / "missing") is None


def test_accounting_is_not_exact_when_a_frame_is_missing_or_not_drained() -> None:
    row = Row("plain loop", "1×", 1.0, 100.0, sent=3)
    row.add(result(0, 10), BUDGET)
    row.add(Seen("dlq", 0.0, reason="bad-shape"), BUDGET)
    assert not row.exact
    row.add(result(0, 10), BUDGET)
    assert row.exact
    row.drained = False
    assert not row.exact


def test_goodput_is_on_time_results_per_second_of_sending_against_own_capacity() -> None:
    row = Row("quix", "2×", 2.0, capacity=400.0, sent=8000, elapsed_s=10.0)
    row.on_time = 1200
    assert row.offered == pytest.approx(800.0)
    assert row.goodput == pytest.approx(120.0)
    assert row.goodput_pct == pytest.approx(30.0)
    row.cpu_ms = 2400.0
    assert row.cpu_per_on_time == pytest.approx(2.0)


def test_e2e_is_broker_append_time_minus_capture() -> None:
    row = Row("quix", "1×", 1.0, 100.0)
    row.add(result(1000, 1040, appended=1050), BUDGET)
    row.add(result(1000, 1040), BUDGET)  # no append time: when the collector got it
    assert row.e2e_ms == [50.0, 45.0]


def test_a_late_record_is_keyed_by_id_and_a_counted_range_by_its_source() -> None:
    single = {h.ID: "f1", h.SOURCE_TOPIC: "p.raw", h.SOURCE_PARTITION: "2", h.SOURCE_OFFSET: "40"}
    assert record_key(single) == "f1"
    assert record_key(single, count=5) == "p.raw/2/40+5"
    assert (
        record_key({h.SOURCE_TOPIC: "p.raw", h.SOURCE_PARTITION: "0", h.SOURCE_OFFSET: "7"}) == "p.raw/0/7+1"
    )
    assert [late_count(v) for v in ("", "1", "12", "0", "-3", "x")] == [1, 1, 12, 1, 1, 1]


def _rows() -> list[Row]:
    rows: list[Row] = []
    for repeat, scale in enumerate((1.0, 1.3, 0.8)):
        for name, cap in (("ontime split", 400.0), ("quix", 500.0), ("plain loop", 480.0)):
            capacity = cap * scale
            rows.append(Row(name, CAPACITY, 0.0, capacity, sent=100, results=100, on_time=100, cpu_ms=200.0))
            for factor in (0.5, 2.0):
                sent = int(factor * capacity * 2)
                on_time = int(min(factor, 1.0) * capacity * 2 * (0.9 if name == "ontime split" else 0.5))
                late = sent - on_time if name == "ontime split" else 0
                rows.append(
                    Row(
                        name,
                        f"{factor:g}×",
                        factor,
                        capacity,
                        sent=sent,
                        elapsed_s=2.0,
                        results=sent - late,
                        on_time=on_time,
                        late=late,
                        e2e_ms=[10.0 + repeat, 30.0],
                        cpu_ms=1.0 * on_time,
                        rss_mb=[100.0 + repeat, 90.0],
                    )
                )
            rows.append(Row(name, BURST, 0.0, capacity, sent=50, elapsed_s=0.01, results=50, on_time=50))
    return rows


def test_medians_over_interleaved_repeats() -> None:
    cells = {(c.contender, c.load): c for c in medians(_rows())}
    cap = cells[("quix", CAPACITY)]
    assert cap.repeats == 3
    assert cap.capacity == pytest.approx(500.0)
    half = cells[("ontime split", "0.5×")]
    assert half.exact == 3
    assert half.rss_mb == (102.0, 90.0)  # per process: the worst repeat
    assert half.p50_ms == pytest.approx(20.5)  # p50s 20, 20.5, 21


def test_tables_show_every_contender_at_every_load_and_the_peers_share_at_2x() -> None:
    cells = medians(_rows())
    capacity = render_capacity(cells)
    assert "| ontime split | 400 | 0.80 |" in capacity
    loads = render_loads(cells)
    assert sum(line.startswith("| 2× |") for line in loads.splitlines()) == 3
    assert "| burst | quix | 50 at once |" in loads
    ratios = render_ratios(cells)
    assert "ontime split vs quix: capacity 0.80×" in ratios
    assert "peers at 2×" in ratios and "plain loop" in ratios


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = plot(medians(_rows()), tmp_path / "goodput.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_and_peak_rss_from_proc(tmp_path: Path) -> None:
    pid = tmp_path / "42"
    pid.mkdir()
    ticks = os.sysconf("SC_CLK_TCK")
    # A command name with a space and a parenthesis must not shift the fields.
    rest = ["S"] + ["0"] * 10 + [str(3 * ticks), str(ticks)] + ["0"] * 30
    (pid / "stat").write_text("42 (python (x) y) " + " ".join(rest) + "\n")
    (pid / "status").write_text("Name:\tpython\nVmPeak:\t 900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n")
    assert cpu_ms(42, tmp_path) == pytest.approx(4000.0)
    assert peak_rss_mb(42, tmp_path) == pytest.approx(200.0)
    assert cpu_ms(43, tmp_path) == 0.0 and peak_rss_mb(43, tmp_path) == 0.0


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    return parser.parse_args(["goodput", *argv])


def test_quick_and_full_plans_and_overrides() -> None:
    assert plan_from_args(_args()) == FULL
    assert plan_from_args(_args("--quick")) == QUICK
    assert QUICK.repeats == 1 and FULL.repeats >= 3
    assert FULL.loads == (0.25, 0.5, 0.8, 1.0, 2.0, 4.0)
    plan = plan_from_args(
        _args("--quick", "--loads", "1,2", "--no-burst", "--contenders", "quix, plain loop")
    )
    assert plan.loads == (1.0, 2.0) and not plan.burst and plan.contenders == ("quix", "plain loop")


def test_an_unknown_contender_is_refused_before_anything_starts() -> None:
    with pytest.raises(BenchError, match="flink"):
        run_goodput(load_settings("acoustic"), io.StringIO(), replace(QUICK, contenders=("quix", "flink")))


def test_a_private_pipeline_shares_no_topic_with_the_shipped_one() -> None:
    shipped = load_settings("acoustic")
    private = private_pipeline(shipped, "127.0.0.1:1", "gp")
    names = private.pipeline.topics.all()
    assert len(set(names)) == len(names) == len(shipped.pipeline.topics.all())
    assert not set(names) & set(shipped.pipeline.topics.all())  # the control topic included
    assert all(n.startswith(f"gp-{private.pipeline.name[2:]}.") for n in names)
