"""The hostile-input battery (tests/integration/battery.py) through one pipeline run on a real broker.

Every case is followed by a good frame on the same partition. At the end: every bad record is in
`P.dlq` (or `P.late`) with its expected reason, every good one and every accepted case answered,
each result is strict JSON, no worker died or restarted, and sent = results + late + dlq.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from schemas.errors import ErrorRecord
from schemas.results import Result
from tests.integration.battery import PCM, Case, Inputs, cases, tensor_type
from tests.integration.pipeline_kit import (
    Reader,
    Record,
    WorkerThread,
    eval_clips,
    fresh_pipeline,
    record_count,
)
from workers.config.settings import OntimeSettings
from workers.messages import headers as h
from workers.messages.envelope import Source, derived_id
from workers.stages.model import OnnxModel

Coord = tuple[str, int, int]


@dataclass
class Sent:
    """One produced record and what must become of it."""

    case: str
    coord: Coord
    expect: str
    id: str | None
    source: Case | None = None


def _reject_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def real_inputs(settings: OntimeSettings) -> Inputs:
    clip = eval_clips()[0]
    stages = settings.pipeline.stages
    features = OnnxModel(stages["preprocess"].model)
    classifier = OnnxModel(stages["infer"].model)
    x = (clip.pcm.astype(np.float32) / 32768.0)[None, :]
    feats = features.run({features.input_names[0]: x})[features.output_names[0]].astype(np.float32)
    logits = classifier.run({classifier.input_names[0]: feats})[classifier.output_names[0]]
    return Inputs(clip.pcm.astype("<i2").tobytes(), feats, logits.astype(np.float32))


class Sender:
    """Produces records one at a time and learns each one's (topic, partition, offset)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producers: dict[str, Producer] = {}

    def producer(self, compression: str | None) -> Producer:
        name = compression or "none"
        if name not in self.producers:
            self.producers[name] = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "compression.type": name,
                    "linger.ms": 20,
                    "message.max.bytes": 2_000_000,  # the oversized case; the topic takes ~1 MB
                }
            )
        return self.producers[name]

    def send(
        self,
        topic: str,
        partition: int,
        key: str,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        compression: str | None = None,
        copies: int = 1,
    ) -> list[Coord]:
        coords: list[Coord] = []
        errors: list[str] = []

        def delivered(err: object, msg: object) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                coords.append((msg.topic(), msg.partition(), msg.offset()))  # type: ignore[attr-defined]

        producer = self.producer(compression)
        for _ in range(copies):
            producer.produce(
                topic,
                value=value,
                key=key.encode(),
                headers=headers,
                partition=partition,
                on_delivery=delivered,
            )
        assert producer.flush(30) == 0 and not errors, errors
        return sorted(coords)

    def send_kcat(
        self,
        topic: str,
        partition: int,
        key: str,
        value: bytes,
        headers: list[tuple[str | bytes, bytes]],
        tmp: Path,
    ) -> Coord:
        """A record whose header names are raw bytes: only kcat (librdkafka's C API) writes those."""
        before = self._high(topic, partition)
        frame = tmp / "frame.bin"
        frame.write_bytes(value)
        cmd: list[str | bytes] = [
            "kcat",
            "-P",
            "-b",
            self.bootstrap,
            "-t",
            topic,
            "-p",
            str(partition),
            "-k",
            key,
        ]
        for name, val in headers:
            cmd += ["-H", (name if isinstance(name, bytes) else name.encode()) + b"=" + val]
        cmd.append(str(frame))
        subprocess.run(cmd, check=True, timeout=60)
        assert self._high(topic, partition) == before + 1
        return (topic, partition, before)

    def _high(self, topic: str, partition: int) -> int:
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "battery-watermarks"})
        try:
            return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
        finally:
            c.close()


def test_battery_of_hostile_inputs(
    kafka_bootstrap: str,
    topic_factory: object,
    workers: list[WorkerThread],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert shutil.which("kcat"), "kcat (Debian package kcat) writes the non-UTF-8 header names"
    # infer waits for company, so record_deadline reads every features record's headers too.
    settings = fresh_pipeline(
        kafka_bootstrap,
        topic_factory,  # type: ignore[arg-type]
        pipeline={"stages": {"infer": {"batch": {"max_wait_ms": 20}}}},
    )
    topics = settings.pipeline.topics
    parts = topics.partitions
    topic_of = {"raw": topics.raw, "features": topics.features, "scores": topics.scores}
    inputs = real_inputs(settings)
    good_value = {"raw": inputs.pcm, "features": inputs.features.tobytes(), "scores": inputs.logits.tobytes()}
    good_type = {
        "raw": PCM.encode(),
        "features": tensor_type("float32", "1x40x101"),
        "scores": tensor_type("float32", "1x17"),
    }
    table = cases(inputs)
    # Workers start once everything is sent: a kcat record's offset is read off the partition's
    # high watermark, which must not move under a worker's own output meanwhile.
    for stage in ("preprocess", "infer", "postprocess"):
        workers.append(WorkerThread(settings, [stage], start_now=False))

    sender = Sender(kafka_bootstrap)
    sent: list[Sent] = []
    for i, case in enumerate(table):
        topic, partition, key = topic_of[case.topic], i % parts, f"dev-{i}"
        headers = ([(h.ID, case.name.encode())] if case.id_header else []) + case.headers
        if case.via_kcat:
            assert case.payload is not None
            coords = [sender.send_kcat(topic, partition, key, case.payload, headers, tmp_path)]
        else:
            coords = sender.send(
                topic,
                partition,
                key,
                case.payload,
                headers,
                case.compression,
                case.copies,  # type: ignore[arg-type]
            )
        for n, coord in enumerate(coords):
            sent.append(Sent(f"{case.name}#{n}", coord, case.expect, _expected_id(case, coord), case))
        good_id = f"good-{i}"
        (coord,) = sender.send(
            topic,
            partition,
            key,
            good_value[case.topic],
            [(h.ID, good_id.encode()), (h.CONTENT_TYPE, good_type[case.topic])],
        )
        sent.append(Sent(good_id, coord, "result", good_id))

    for w in workers:
        w.start()
    reader = Reader(kafka_bootstrap, [topics.results, topics.dlq, topics.late], parts)
    try:

        def done(records: list[Record]) -> bool:
            for w in workers:
                assert w.error is None and w.thread.is_alive(), f"worker {w.stages} died: {w.error!r}"
            return len(records) >= len(sent)

        out = reader.read_until(done, timeout=240)
        for w in workers:
            assert w.error is None and w.thread.is_alive(), f"worker {w.stages} died: {w.error!r}"
            assert w.telemetry.started_stages == w.stages, "a worker restarted"  # type: ignore[attr-defined]
        untrusted = workers[0].worker.stages[0].untrusted
        for w in workers:
            w.stop()
        workers.clear()
        counts = {
            t: record_count(kafka_bootstrap, t, parts) for t in (topics.results, topics.late, topics.dlq)
        }
    finally:
        reader.close()

    # sent = results + late + dlq, exactly: nothing lost, nothing doubled.
    assert sum(counts.values()) == len(sent), counts
    by_coord = {s.coord: s for s in sent}
    by_id = {s.id: s for s in sent if s.expect == "result"}
    outcome: dict[str, str] = {}
    problems: list[str] = []
    for rec in out:
        if rec.topic == topics.results:
            result = Result.model_validate(json.loads(rec.value or b"", parse_constant=_reject_constant))
            item = by_id.get(result.id)
            if item is None:
                problems.append(f"unexpected result {result.id}")
                continue
            outcome[item.case] = "result"
            check = item.source.check if item.source is not None else None
            complaint = check(result) if check is not None else None
            if complaint:
                problems.append(f"{item.case}: {complaint}")
        else:
            kind = "dlq" if rec.topic == topics.dlq else "late"
            err = ErrorRecord.from_headers(kind, rec.headers)
            item = by_coord.get((err.source_topic, err.source_partition, err.source_offset))
            if item is None:
                problems.append(f"unexpected {kind} record {err}")
                continue
            outcome[item.case] = f"{kind}:{err.reason}"
            if kind == "dlq":
                assert err.detail, item.case
                if item.source is not None and item.source.by_reference:
                    assert rec.value is None and "not produced" in err.detail, (item.case, err.detail)
                elif item.source is not None and item.source.payload is not None:
                    assert rec.value == item.source.payload, (
                        f"{item.case}: payload changed on its way to the DLQ"
                    )
    for s in sent:
        if outcome.get(s.case) != s.expect:
            problems.append(f"{s.case}: expected {s.expect}, got {outcome.get(s.case)}")
    assert not problems, "\n".join(problems)
    assert untrusted[h.STATUS] >= 2 and untrusted[h.STAGE_MS] >= 2 and untrusted[h.MODEL] >= 1, untrusted

    bad = [c for c in table if c.expect != "result"]
    with capsys.disabled():
        print(
            f"\nbattery: {len(table)} kinds of hostile input ({len(bad)} dead-lettered or late by rule, "
            f"{len(table) - len(bad)} answered with the bad part dropped), {len(sent)} records sent "
            f"= {counts[topics.results]} results + {counts[topics.late]} late + {counts[topics.dlq]} dlq"
        )


def _expected_id(case: Case, coord: Coord) -> str | None:
    """The result id a case must answer with (None when it must not be answered)."""
    if case.expect != "result":
        return None
    if case.check is not None and case.name == "duplicate-id":
        return "dup-last"
    if not case.id_header:
        return derived_id(Source(coord[0], coord[1], coord[2], 0))
    return case.name
