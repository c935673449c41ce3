"""`ontime bench goodput` in its smallest mode on the real broker: every contender answers, and
every frame sent is accounted for exactly (results + late + dlq), row by row. No timings."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from workers.config.settings import load_settings
from workers.tools.bench.contenders import CONTENDERS, default_quix_python
from workers.tools.bench.goodput import QUICK, run_goodput
from workers.tools.bench.goodput_rows import BURST, CAPACITY

SMALLEST = replace(QUICK, loads=(1.0,), seconds=1.0, backlog=60, repeats=1, burst=True)


@pytest.mark.timeout(900)
def test_smallest_run_accounts_for_every_frame_of_every_contender(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert default_quix_python().exists(), "the Quix Streams environment is missing: run `make setup`"
    monkeypatch.setenv("ONTIME_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    out = io.StringIO()
    outcome = run_goodput(load_settings("acoustic"), out, SMALLEST, tmp_path)

    loads = {(r.contender, r.load) for r in outcome.rows}
    assert loads == {(c, load) for c in CONTENDERS for load in (CAPACITY, "1×", BURST)}
    for row in outcome.rows:
        assert row.sent > 0, row
        assert row.sent == row.results + row.late + row.dlq, (row.contender, row.load, out.getvalue())
        assert row.exact
        assert row.dlq == 0
        assert row.rss_mb and all(mb > 0 for mb in row.rss_mb)
        assert row.cpu_ms >= 0
    for name in CONTENDERS:
        capacity = next(r for r in outcome.rows if r.contender == name and r.load == CAPACITY)
        assert capacity.results == capacity.sent  # a 60 s budget: nothing of the backlog is shed
        assert capacity.capacity > 0
    peers = [r for r in outcome.rows if r.contender in ("quix", "plain loop")]
    assert all(r.late == 0 and r.results == r.sent for r in peers)  # no deadlines: every frame answered
    processes = {r.contender: len(r.rss_mb) for r in outcome.rows}
    assert processes == {"ontime split": 3, "ontime fused": 1, "quix": 1, "plain loop": 1}
    assert "peers at 2×" not in outcome.report  # no 2× row in this plan
    assert {f.name for f in outcome.files} == {"report.md", "rows.json", "goodput.png"}
    assert (tmp_path / "goodput.png").read_bytes()[:4] == b"\x89PNG"
