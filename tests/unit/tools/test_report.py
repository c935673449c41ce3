"""The budget report from a recorded results file: numbers, PNG, HTML and the CLI verb.

tests/data/results-sample.jsonl is the results.jsonl of a real pipeline run, recorded with
`ontime demo --devices 8 --rate 2 --duration 20 --seed 5`: real recordings from the device fleet
through the three stage workers and the served models on a local Kafka broker (311 results).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from schemas.results import Result
from workers.config.settings import load_settings
from workers.errors import ConfigError
from workers.tools.report import BudgetBreakdown, end_to_end_ms, read_file, render_table, write_report

SAMPLE = Path(__file__).parents[2] / "data" / "results-sample.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results() -> list[Result]:
    loaded = read_file(SAMPLE)
    assert len(loaded) >= 50, "the recorded sample should hold a real run's worth of results"
    return loaded


def test_percentiles_per_stage_and_end_to_end(results: list[Result]) -> None:
    pipeline = load_settings("acoustic").pipeline
    budget = BudgetBreakdown.of(results, pipeline)
    assert [row.stage for row in budget.stages] == ["preprocess", "infer", "postprocess"]
    for row in budget.stages:
        queue = [t.queue_ms for r in results for t in r.stages if t.stage == row.stage]
        compute = [t.compute_ms for r in results for t in r.stages if t.stage == row.stage]
        assert row.queue.count == len(results)
        assert row.queue.p95 == pytest.approx(np.percentile(queue, 95))
        assert row.compute.p99 == pytest.approx(np.percentile(compute, 99))
        assert row.budget_ms == pytest.approx(pipeline.budget_ms * pipeline.stages[row.stage].budget_share)  # type: ignore[index]
    e2e = [r.completed_ms - r.captured_ms for r in results if r.captured_ms is not None]
    assert budget.end_to_end.p50 == pytest.approx(np.percentile(e2e, 50))
    assert budget.within_budget == pytest.approx(np.mean([v <= pipeline.budget_ms for v in e2e]))
    table = render_table(budget)
    for stage in ("preprocess", "infer", "postprocess", "end-to-end"):
        assert stage in table
    assert f"{budget.end_to_end.p95:.1f}" in table


def test_end_to_end_without_capture_counts_from_the_deadline(results: list[Result]) -> None:
    r = results[0].model_copy(update={"captured_ms": None})
    assert end_to_end_ms(r, 250.0) == r.completed_ms - (r.deadline_ms - 250.0)
    assert end_to_end_ms(r, None) is None


def test_png_and_html_from_the_recorded_file(results: list[Result], tmp_path: Path) -> None:
    import matplotlib.image

    paths = write_report(results, tmp_path / "report")  # budget from the bundled pipeline
    names = {p.name: p for p in paths}
    assert set(names) == {"budget.png", "report.html", "report.txt"}
    png = names["budget.png"].read_bytes()
    assert png.startswith(PNG_MAGIC)
    image = matplotlib.image.imread(names["budget.png"])
    height, width = image.shape[:2]
    assert width >= 1200 and height >= 600
    assert float(image[..., :3].std()) > 0.05, "the picture is not blank"
    page = names["report.html"].read_text()
    assert 'src="data:image/png;base64,' in page
    for stage in ("preprocess", "infer", "postprocess", "end-to-end"):
        assert f"<th>{stage}</th>" in page
    assert "250.0" in names["report.txt"].read_text()


def test_cli_verb_reads_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workers.cli.main import main

    assert main(["report", "--file", str(SAMPLE), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "latency budget of acoustic" in out and "within the 250 ms budget" in out
    assert (tmp_path / "budget.png").read_bytes().startswith(PNG_MAGIC)


def test_a_line_that_is_not_a_result_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text(SAMPLE.read_text().splitlines()[0] + "\n" + '{"id": "x"}\n')
    with pytest.raises(ConfigError, match=r"broken.jsonl:2"):
        read_file(broken)


def test_no_results_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_report([], tmp_path)
    assert math.isnan(BudgetBreakdown.of([], None).end_to_end.p50)
