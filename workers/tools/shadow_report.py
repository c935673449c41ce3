"""`ontime report --shadow`: how the shadow candidate agreed with the serving version, per window.

Reads the `P.shadow` comparisons (workers/tools/shadow.py) from the beginning and prints, per
window of `--window` seconds: frames, top-1 agreement, the mean change of the probability of
the serving answer, and each version's median model time on the same batches; then agreement
by the serving version's label over the whole run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.config.settings import OntimeSettings
from workers.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Agreement:
    """One window (or one label) of comparisons."""

    key: str  # window start (UTC) or label
    frames: int
    agree: float  # share of frames with the same top-1
    score_delta: float  # mean candidate-minus-serving probability of the serving answer
    serving_ms: float  # median model time of the batch, serving version
    candidate_ms: float

    @classmethod
    def of(cls, key: str, rows: Sequence[dict[str, Any]]) -> Agreement:
        return cls(
            key,
            len(rows),
            float(np.mean([bool(r["agree"]) for r in rows])),
            float(np.mean([float(r["score_delta"]) for r in rows])),
            float(np.median([float(r["serving_ms"]) for r in rows])),
            float(np.median([float(r["candidate_ms"]) for r in rows])),
        )


def by_window(rows: Iterable[dict[str, Any]], window_s: float) -> list[Agreement]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(int(r["at_ms"] // (window_s * 1000)), []).append(r)
    return [
        Agreement.of(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(k * window_s)), groups[k])
        for k in sorted(groups)
    ]


def by_label(rows: Iterable[dict[str, Any]]) -> list[Agreement]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r["label"]), []).append(r)
    return [Agreement.of(label, groups[label]) for label in sorted(groups)]


def render(rows: Sequence[dict[str, Any]], window_s: float) -> str:
    if not rows:
        return "no shadow comparisons yet (is `ontime worker --stage infer --shadow VERSION` running?)"
    models = sorted({(r["serving_model"], r["candidate_model"]) for r in rows})
    head = "\n".join(f"serving {s}  vs  candidate {c}" for s, c in models)
    out = [
        head,
        "",
        _table("window (UTC)", by_window(rows, window_s)),
        "",
        _table("label (serving)", by_label(rows)),
    ]
    overall = Agreement.of("all", rows)
    out.append(f"\n{overall.frames} frames, top-1 agreement {overall.agree:.1%}, ")
    out[-1] += f"mean score delta {overall.score_delta:+.3f}"
    return "\n".join(out)


COLUMNS = (("frames", 7), ("agree", 6), ("Δscore", 7), ("serving ms", 10), ("candidate ms", 12))


def _table(first: str, rows: list[Agreement]) -> str:
    width = max(len(first), *(len(r.key) for r in rows))
    lines = [f"{first:{width}}" + "".join(f"  {name:>{w}}" for name, w in COLUMNS)]
    for r in rows:
        cells: tuple[str, ...] = (f"{r.frames:7d}", f"{r.agree:6.1%}", f"{r.score_delta:+7.3f}")
        cells += (f"{r.serving_ms:10.2f}", f"{r.candidate_ms:12.2f}")
        lines.append(f"{r.key:{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def read_comparisons(settings: OntimeSettings, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every comparison on `P.shadow` up to its current end, read without committing anything."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = settings.pipeline.topics.shadow
    consumer = Consumer(
        {**settings.kafka.as_librdkafka_dict(), "group.id": f"ontime.report.{uuid.uuid4().hex[:8]}",
         "enable.auto.commit": False}
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ConfigError(f"topic {topic} not found: {meta.error if meta else 'no metadata'}")
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
        pending = {p for p, high in ends.items() if high > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            if int(msg.offset() or 0) + 1 >= ends[int(msg.partition() or 0)]:
                pending.discard(int(msg.partition() or 0))
            try:
                rows.append(json.loads(msg.value() or b""))
            except ValueError:
                continue
    finally:
        consumer.close()
    return [r for r in rows if isinstance(r, dict) and {"agree", "score_delta", "label", "at_ms"} <= set(r)]
