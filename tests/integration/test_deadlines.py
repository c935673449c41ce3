"""Deadlines on the real broker: expired frames never reach a model, and an overload is accounted for.

The stage workers run in threads of the test process with the pipeline's real models; frames are
real recordings published with the contract headers. Every frame sent must come out exactly once
on P.results, P.late or P.dlq.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer

from schemas.errors import LATE_REASONS
from schemas.results import Result
from tests.integration.pipeline_kit import make_topics, wait_assigned_stages
from workers.config.settings import KafkaSettings, OntimeSettings, load_settings
from workers.config.spec import STAGE_ORDER, TOPIC_KINDS, PipelineSpec
from workers.loop.worker import StageWorker
from workers.messages import headers as h
from workers.messages.deadline import now_ms
from workers.messages.reasons import SKIPPED
from workers.stages.chain import build_stages
from workers.stages.stage import Stage

TopicFactory = Callable[..., str]


def make_settings(bootstrap: str, topic_factory: TopicFactory, **stage_changes: Any) -> OntimeSettings:
    """The acoustic pipeline on fresh topics and its own consumer groups."""
    base = load_settings("acoustic")
    data = base.pipeline.model_dump()
    data["name"] = f"t{uuid.uuid4().hex[:10]}"
    topics = {k: f"{data['name']}.{k}" for k in TOPIC_KINDS}
    data["topics"] = {**topics, "partitions": 3, "replication_factor": 1}
    for stage, changes in stage_changes.items():
        data["stages"][stage].update(changes)
    settings = base.model_copy(
        update={
            "kafka": KafkaSettings(bootstrap_servers=bootstrap),
            "pipeline": PipelineSpec.model_validate(data),
        }
    )
    make_topics(settings, topic_factory)
    return settings


@contextmanager
def running(settings: OntimeSettings, groups: list[list[str]]) -> Iterator[dict[str, Stage]]:
    """Stage workers in threads, one per group of stage names; stopped and joined on exit."""
    stages: dict[str, Stage] = {}
    workers: list[StageWorker] = []
    for names in groups:
        built = build_stages(settings.pipeline, names)
        stages.update({s.name: s for s in built})
        workers.append(StageWorker(settings, built))
    errors: list[BaseException] = []

    def serve(worker: StageWorker) -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced by the test below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        wait_assigned_stages(settings, [names[0] for names in groups], 90.0)
        yield stages
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors


def clips() -> list[bytes]:
    from pipelines.acoustic.recordings import real_clips

    return [np.ascontiguousarray(c.pcm, dtype="<i2").tobytes() for c in real_clips("eval")]


class Publisher:
    """Publishes real frames to P.raw as devices would; connected (and idempotent-ready) up front,
    so a frame's deadline does not pay for the producer's start."""

    def __init__(self, settings: OntimeSettings, warm_topic: str) -> None:
        self.spec = settings.pipeline
        self.payloads = clips()
        self.producer = Producer(
            {**settings.kafka.as_librdkafka_dict(), "enable.idempotence": True, "acks": "all", "linger.ms": 2}
        )
        self.producer.produce(warm_topic, value=b"warm-up")
        assert self.producer.flush(60) == 0

    def send(self, count: int, deadline: Callable[[int], int], rate: float | None = None) -> list[str]:
        """`count` frames from 8 devices, `rate` per second (None: at once); `deadline(captured_ms)`
        stamps each one."""
        ids = []
        start = time.monotonic()
        for n in range(count):
            if rate is not None:
                while (left := start + n / rate - time.monotonic()) > 0:
                    self.producer.poll(left)  # serve delivery callbacks until the frame is due
            frame_id = str(uuid.uuid4())
            captured = int(now_ms())
            headers = [
                (h.ID, frame_id.encode()),
                (h.CAPTURED_MS, str(captured).encode()),
                (h.CONTENT_TYPE, self.spec.frame.content_type.encode()),
                (h.DEADLINE_MS, str(deadline(captured)).encode()),
            ]
            self.producer.produce(
                self.spec.topics.raw,
                value=self.payloads[n % len(self.payloads)],
                key=f"mic-{n % 8:04d}".encode(),
                headers=headers,  # type: ignore[arg-type]
                timestamp=captured,
            )
            self.producer.poll(0)
            ids.append(frame_id)
        assert self.producer.flush(30) == 0
        return ids


class Collected:
    """Everything that came out on results, late and dlq, keyed by frame id."""

    def __init__(self) -> None:
        self.results: dict[str, Result] = {}
        self.late: dict[str, dict[str, str]] = {}
        self.dlq: dict[str, dict[str, str]] = {}
        # Skip-ahead ranges: (stage, partition, first offset) → frames the record stands for.
        self.skipped: dict[tuple[str, int, int], int] = {}
        self.duplicates = 0

    @property
    def skipped_frames(self) -> int:
        return sum(self.skipped.values())

    @property
    def total(self) -> int:
        return len(self.results) + len(self.late) + len(self.dlq) + self.skipped_frames


def collect(settings: OntimeSettings, expected: int, timeout_s: float = 120.0) -> Collected:
    """Read P.results, P.late and P.dlq until `expected` frames are accounted for (or time runs out)."""
    topics = settings.pipeline.topics
    consumer = Consumer(
        {
            **settings.kafka.as_librdkafka_dict(),
            "group.id": f"collector-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topics.results, topics.late, topics.dlq])
    out = Collected()
    give_up = time.monotonic() + timeout_s
    try:
        while out.total < expected and time.monotonic() < give_up:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    continue
                hd = h.as_dict(msg.headers())  # type: ignore[arg-type]
                frame = hd.get(h.ID, "")
                seen = frame in out.results or frame in out.late or frame in out.dlq
                out.duplicates += seen
                if msg.topic() == topics.results:
                    out.results[frame] = Result.model_validate_json(msg.value() or b"")
                elif msg.topic() == topics.late and hd.get(h.ERROR_REASON) == SKIPPED:
                    where = (hd[h.ERROR_STAGE], int(hd[h.SOURCE_PARTITION]), int(hd[h.SOURCE_OFFSET]))
                    out.duplicates += where in out.skipped
                    out.skipped[where] = int(hd[h.LATE_COUNT])
                elif msg.topic() == topics.late:
                    out.late[frame] = hd
                else:
                    out.dlq[frame] = hd
        # A little longer, to catch any record beyond the expected count (a duplicate or a stray).
        for msg in consumer.consume(num_messages=500, timeout=1.0):
            if not msg.error():
                out.duplicates += 1
    finally:
        consumer.close()
    return out


def test_frames_published_already_expired_never_reach_a_model(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    settings = make_settings(kafka_bootstrap, topic_factory)
    devices = Publisher(settings, topic_factory(partitions=1))
    sent = 60
    devices.send(sent, deadline=lambda captured: captured - 1_000)
    with running(settings, [["preprocess"], ["infer"], ["postprocess"]]) as stages:
        got = collect(settings, sent)
        assert len(got.late) == sent, (len(got.results), len(got.late), len(got.dlq))
        assert all(stages[s].model_rows_run == 0 for s in STAGE_ORDER), {
            s: stages[s].model_rows_run for s in STAGE_ORDER
        }
        assert stages["preprocess"].shed["expired"] == sent
        # The worker keeps going: fresh frames behind the expired backlog are answered.
        fresh = 12
        devices.send(fresh, deadline=lambda captured: captured + 5_000)
        got = collect(settings, sent + fresh)
    reasons = Counter(
        (hd[h.ERROR_STAGE], hd[h.ERROR_REASON], hd[h.ERROR_DETAIL][:90]) for hd in got.late.values()
    )
    assert got.results and len(got.results) + len(got.late) == sent + fresh, reasons
    assert {hd[h.ERROR_REASON] for hd in got.late.values()} == {"expired"}
    assert {hd[h.ERROR_STAGE] for hd in got.late.values()} == {"preprocess"}
    assert all(hd[h.ERROR_DETAIL].startswith("overrun_ms=") for hd in got.late.values())
    assert all(int(hd[h.SOURCE_OFFSET]) >= 0 for hd in got.late.values())
    assert stages["preprocess"].model_rows_run == len(got.results)
    assert got.duplicates == 0


def test_an_overload_burst_answers_admitted_frames_on_time_and_routes_the_rest_late(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """Infer comes back (restart, rebalance) to a burst that piled up while it was away, while
    frames keep arriving: the expired part is skipped, the rest answered on time."""
    settings = make_settings(kafka_bootstrap, topic_factory)
    sent, rate = 900, 300.0
    budget = int(settings.pipeline.budget_ms)
    devices = Publisher(settings, topic_factory(partitions=1))
    with running(settings, [["preprocess"], ["postprocess"]]) as first:
        sender = threading.Thread(
            target=devices.send, args=(sent, lambda captured: captured + budget, rate), daemon=True
        )
        sender.start()
        # Infer starts once a backlog is waiting for it, and keeps up with the stream after.
        backlog_s = 1.0
        sender.join(timeout=backlog_s)
        with running(settings, [["infer"]]) as second:
            sender.join(timeout=120)
            got = collect(settings, sent)
    stages = {**first, **second}
    late_reasons = Counter(hd[h.ERROR_REASON] for hd in got.late.values())
    where = Counter((hd[h.ERROR_STAGE], hd[h.ERROR_REASON]) for hd in got.late.values())
    summary = (
        len(got.results),
        dict(where),
        len(got.dlq),
        got.skipped,
        got.duplicates,
        sorted(hd[h.ERROR_DETAIL][:60] for hd in got.late.values())[::60],
    )
    # Every frame sent is accounted for exactly once (a skipped range counts its frames).
    assert len(got.results) + len(got.late) + len(got.dlq) + got.skipped_frames == sent, summary
    assert got.duplicates == 0, summary
    assert set(late_reasons) <= set(LATE_REASONS), summary
    # The burst overloaded the pipeline: some frames were shed before compute …
    assert late_reasons["expired"] + late_reasons["insufficient-budget"] + got.skipped_frames > 0, summary
    infer_skipped = sum(n for (stage, _, _), n in got.skipped.items() if stage == "infer")
    infer_shed = stages["infer"].shed["expired"] + stages["infer"].shed["insufficient-budget"]
    assert infer_shed + infer_skipped > 0, summary
    # … the admitted ones were answered within their deadline …
    assert len(got.results) > 0, summary
    for result in got.results.values():
        assert result.completed_ms <= result.deadline_ms, result
        assert [s.stage for s in result.stages] == list(STAGE_ORDER)
    # … and admission was right: almost nothing admitted finished past its deadline.
    admitted = len(got.results) + late_reasons["missed"]
    assert late_reasons["missed"] <= max(2, admitted // 50), summary
    # Shed frames cost no compute: infer ran exactly the frames that left it computed.
    by_stage = Counter((hd[h.ERROR_STAGE], hd[h.ERROR_REASON]) for hd in got.late.values())
    left_infer_computed = (
        len(got.results) + sum(n for (stage, _), n in by_stage.items() if stage == "postprocess")
    ) + by_stage[("infer", "missed")]
    assert stages["infer"].model_rows_run == left_infer_computed, (summary, dict(by_stage))
