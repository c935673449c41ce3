"""Drift scores of a real chained worker on a real broker, scraped from its /metrics.

Held-out frames first: every score stays under its card's threshold. Then the same audio 30 dB
quieter: once the window has turned over, level, silence and log-mel scores are over theirs.
"""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.pipeline_kit import (
    Frame,
    WorkerThread,
    fresh_pipeline,
    send_frames,
    stop_all,
    wait_for,
)
from tests.unit.telemetry.test_drift import held_out_stream
from workers.telemetry.fanout import Observability, build_telemetry
from workers.tools import drift_report

STAGES = ["preprocess", "infer", "postprocess"]
FRAMES = 640  # more than the 512-frame window: the second stream replaces the first entirely


def scrape(port: int) -> dict[tuple[str, str, str], float]:
    """(metric, stage, group) -> value of the drift gauges and the settled message count."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("ontime_drift_"):
                out[(s.name, s.labels["stage"], s.labels.get("group", ""))] = s.value
            elif s.name == "ontime_messages_total" and s.labels["stage"] == "postprocess":
                key = ("settled", "postprocess", "")
                out[key] = out.get(key, 0.0) + s.value
    return out


def over(metrics: dict[tuple[str, str, str], float]) -> set[str]:
    scores = {(st, g): v for (name, st, g), v in metrics.items() if name == "ontime_drift_score"}
    limits = {(st, g): v for (name, st, g), v in metrics.items() if name == "ontime_drift_threshold"}
    assert scores and not any(np.isnan(v) for v in scores.values()), scores
    return {f"{st}/{g}" for key, v in scores.items() for st, g in [key] if v > limits[key]}


def test_a_quieter_stream_raises_the_drift_scores_of_a_running_worker(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=1)
    settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"metrics_port": 0})})
    telemetry = build_telemetry(settings, STAGES)
    assert isinstance(telemetry, Observability) and telemetry.port and telemetry.drift is not None
    port = telemetry.port
    worker = WorkerThread(settings, STAGES, telemetry=telemetry)
    try:
        raw = settings.pipeline.topics.raw
        sent = 0
        for phase, gain_db in (("clean", 0.0), ("quiet", -30.0)):
            pcm = held_out_stream(gain_db)[:FRAMES]
            frames = [
                Frame(f"{phase}-{i}", f"mic-{i % 5}", "", row.astype("<i2").tobytes())
                for i, row in enumerate(pcm)
            ]
            sent += send_frames(kafka_bootstrap, raw, frames)
            wait_for(
                lambda n=sent: scrape(port).get(("settled", "postprocess", ""), 0) >= n,
                180,
                f"{phase} frames",
            )
            if phase == "clean":
                assert over(scrape(port)) == set()
        assert {"preprocess/level", "preprocess/silence", "infer/logmel"} <= over(scrape(port))
        out = io.StringIO()
        assert drift_report.report([f"http://127.0.0.1:{port}/metrics"], out) == 1
        assert "| preprocess | level |" in out.getvalue() and "OVER" in out.getvalue()
    finally:
        stop_all([worker], after=lambda _: telemetry.close())
