"""`ontime report --drift`: each worker's current drift scores against their thresholds.

Reads the `ontime_drift_*` gauges from the /metrics of one or more workers (the scores live in
each replica's own window, so there is nothing to read from Kafka) and prints one line per stage
and feature group. Exit status 1 when any group is over its threshold, so a script can act on it.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class DriftRow:
    worker: str
    stage: str
    group: str
    score: float
    threshold: float
    frames: float

    @property
    def state(self) -> str:
        if math.isnan(self.score):
            return "filling"
        return "OVER" if self.score > self.threshold else "ok"


def parse(worker: str, text: str) -> list[DriftRow]:
    """The drift rows of one worker's /metrics text."""
    scores: dict[tuple[str, str], float] = {}
    limits: dict[tuple[str, str], float] = {}
    frames: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "ontime_drift_score":
                scores[(s.labels["stage"], s.labels["group"])] = s.value
            elif s.name == "ontime_drift_threshold":
                limits[(s.labels["stage"], s.labels["group"])] = s.value
            elif s.name == "ontime_drift_window_frames":
                frames[s.labels["stage"]] = s.value
    return [
        DriftRow(worker, stage, group, value, limits.get((stage, group), math.nan), frames.get(stage, 0.0))
        for (stage, group), value in sorted(scores.items())
    ]


def fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        text: str = reply.read().decode()
    return text


def report(urls: list[str], out: TextIO) -> int:
    """Print the table for the workers at `urls`; 1 if a group is over its threshold, else 0."""
    rows: list[DriftRow] = []
    for url in urls:
        rows += parse(url, fetch(url))
    if not rows:
        out.write(
            "no drift scores: no worker at these URLs serves a model whose card has a drift reference\n"
        )
        return 0
    out.write("| worker | stage | group | PSI | threshold | window frames | state |\n")
    out.write("|---|---|---|---|---|---|---|\n")
    for r in rows:
        cells = [r.worker, r.stage, r.group, f"{r.score:.3f}", f"{r.threshold:g}", f"{r.frames:.0f}", r.state]
        out.write("| " + " | ".join(cells) + " |\n")
    return 1 if any(r.state == "OVER" for r in rows) else 0
