"""`ontime demo` at small scale on the session's real broker: every frame sent is accounted for."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from workers.config.settings import load_settings
from workers.tools.demo import DemoOptions, run_demo


@pytest.mark.parametrize("pipeline", ["acoustic", "vision"])
def test_demo_accounts_for_every_frame(kafka_bootstrap: str, tmp_path: Path, pipeline: str) -> None:
    out = io.StringIO()
    options = DemoOptions(devices=2, rate=2.0, duration_s=5.0, run_dir=tmp_path, live=False)
    outcome = run_demo(options, load_settings(pipeline), bootstrap=kafka_bootstrap, out=out)
    text = out.getvalue()

    assert outcome.problems == [], text
    assert outcome.sent == 20, text  # 2 devices × 2 frames/s × 5 s
    assert outcome.delivered == outcome.sent
    assert outcome.results > 0, text
    assert outcome.results + outcome.late + outcome.dlq == outcome.sent, text
    assert outcome.scored == outcome.results  # every result names a frame the fleet sent
    assert outcome.worker_exits == {"preprocess": 0, "infer": 0, "postprocess": 0}, text
    assert f"SUMMARY  {pipeline}:" in text and "end-to-end" in text and "accuracy" in text
    for stage in ("preprocess", "infer", "postprocess"):
        assert f"{stage} compute" in text
    results = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(results) == outcome.results
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == outcome.sent
    for stage in ("preprocess", "infer", "postprocess"):
        assert (tmp_path / f"{stage}.log").exists()
