"""Keyword events end to end on a real broker: streamed devices → three stages → `ontime aggregate`.

The aggregator runs as a real `ontime aggregate` process (faust-streaming over aiokafka), the
stages as workers of the test process, all on the session's Kafka 4.1 broker. Expected events
come from two independent places: the ground truth of the stream (keyword, start, end), and the
same served models + detector run offline over the same windows (what the events must equal).
The keywords streamed here are ones the served model recognises in isolation: these tests prove
the streaming machinery; `ontime bench events` measures how well the model hears held-out audio.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.events import Event
from tests.integration.conftest import TopicFactory
from tests.integration.pipeline_kit import (
    ROOT,
    WorkerThread,
    cli_overrides,
    fresh_pipeline,
    produce,
    wait_for,
)
from workers.aggregate.app import changelog_topic
from workers.config.settings import OntimeSettings
from workers.messages import headers as h
from workers.tools.bench.harness import write_pipeline
from workers.tools.events.offline import OfflineChain
from workers.tools.events.scoring import TOLERANCE_MS, Heard, Truth, match
from workers.tools.events.tune import detect, score_stream
from workers.tools.stream import StreamFleet, StreamPlan

# Time tolerance of an event against the truth: its [start, end] overlaps the keyword's audio
# widened by this much on each side (scoring.TOLERANCE_MS).
KEYWORDS = ("six", "three", "one", "two", "hello")


class Aggregator:
    """`ontime aggregate` as a subprocess (so it can be killed with SIGKILL)."""

    def __init__(self, settings: OntimeSettings, log: Path) -> None:
        # The test's own pipeline (its detector setting included) as the process's YAML.
        pipeline = write_pipeline(settings, log.parent)
        cmd = [
            sys.executable,
            "-m",
            "workers.cli",
            "--pipeline",
            str(pipeline),
            "--bootstrap",
            settings.kafka.bootstrap_servers,
            *cli_overrides(settings),
            "aggregate",
            "--commit-interval",
            "0.5",
            "--data-dir",
            str(log.parent / "aggregate-data"),
        ]
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180.0) -> None:
        marker = self.text().count("[^Worker]: Ready")
        wait_for(
            lambda: self.text().count("[^Worker]: Ready") > marker or self.proc.poll() is not None,
            timeout,
            "aggregator ready",
        )
        assert self.proc.poll() is None, f"aggregator exited:\n{self.text()[-3000:]}"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class TopicReader:
    """Every record of one topic from the beginning (assign, no group), as JSON."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
        )
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.values: list[tuple[bytes | None, bytes | None]] = []
        self.headers: list[dict[str, str]] = []

    def poll(self, seconds: float = 0.5) -> list[tuple[bytes | None, bytes | None]]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for msg in self.consumer.consume(num_messages=500, timeout=0.1):
                if msg.error() is None:
                    self.values.append((msg.key(), msg.value()))
                    self.headers.append(h.as_dict(msg.headers()))
        return self.values

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def pipeline(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> Iterator[tuple[OntimeSettings, list[WorkerThread]]]:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=2)
    # These tests prove the machinery, not the tuning: one common threshold (the per-keyword
    # thresholds move with every retune), the same in the aggregator and the offline reference.
    events = settings.pipeline.events.model_copy(update={"thresholds": {}})
    pinned = settings.pipeline.model_copy(update={"events": events})
    settings = settings.model_copy(update={"pipeline": pinned})
    workers = [WorkerThread(settings, [stage]) for stage in ("preprocess", "infer", "postprocess")]
    try:
        yield settings, workers
    finally:
        for w in workers:
            w.stop()


def _expected(settings: OntimeSettings, fleet: StreamFleet, start_ms: int) -> list[Heard]:
    """What the served models + detector say offline about the same windows."""
    chain = OfflineChain(settings)
    scored = [
        score_stream(chain, d, a, fleet.hop_ms, start_ms)
        for d, a in zip(fleet.devices, fleet.audio, strict=True)
    ]
    return detect(settings.pipeline.events, scored)


def _events(reader: TopicReader) -> list[Event]:
    return [Event.model_validate_json(v or b"") for _, v in reader.values]


def test_streamed_keywords_become_exactly_those_events(
    pipeline: tuple[OntimeSettings, list[WorkerThread]], tmp_path: Path
) -> None:
    settings, _ = pipeline
    aggregator = Aggregator(settings, tmp_path / "aggregate.log")
    reader = TopicReader(settings.kafka.bootstrap_servers, str(settings.pipeline.topics.events), 2)
    try:
        aggregator.wait_ready()
        talking = StreamFleet(
            settings,
            1,
            StreamPlan(seconds=32, keywords=KEYWORDS, lead_s=8.0),
            seed=3,
            speed=4.0,
            device_names=["mic-talk"],
        )
        quiet = StreamFleet(
            settings, 1, StreamPlan(seconds=32, keywords=0), seed=4, speed=4.0, device_names=["mic-quiet"]
        )
        start_ms = int(time.time() * 1000) - 40_000
        sent = [0, 0]

        def run(i: int, fleet: StreamFleet) -> None:
            sent[i] = fleet.run(start_ms=start_ms).delivered

        threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate((talking, quiet))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sent[0] > 100 and sent[1] > 100
        assert [s.word for s in talking.audio[0].keywords] == list(KEYWORDS)
        expected = _expected(settings, talking, start_ms)
        wait_for(lambda: len(reader.poll()) >= len(KEYWORDS), 180, f"{len(KEYWORDS)} events")
        # A record on P.results that is no result: a DLQ record saying why, and the aggregator lives on.
        produce(
            settings.kafka.bootstrap_servers, settings.pipeline.topics.results, [("mic-talk", b"{oops", [])]
        )
        dlq = TopicReader(settings.kafka.bootstrap_servers, settings.pipeline.topics.dlq, 2)
        try:
            wait_for(lambda: bool(dlq.poll(0.3)), 120, "the bad result in the DLQ")
            assert dlq.headers[0][h.ERROR_STAGE] == "aggregate"
            assert dlq.headers[0][h.ERROR_REASON] == "invalid-result"
            assert dlq.values[0][1] == b"{oops"  # the original payload, unchanged
        finally:
            dlq.close()
        reader.poll(3.0)  # and no more events after a while
        assert aggregator.proc.poll() is None, "the aggregator died on a bad record"
        events = _events(reader)
    finally:
        aggregator.stop()
        reader.close()

    assert sorted(e.id for e in events) == sorted(e.id for e in expected), (
        "events differ from the offline reference"
    )
    assert all(e.device == "mic-talk" for e in events), "an event on background-only audio"
    heard = [Heard(e.id, e.device, e.keyword, e.start_ms, e.end_ms, e.emitted_ms) for e in events]
    truth = [
        Truth("mic-talk", s.word, start_ms + s.start_ms, start_ms + s.end_ms)
        for s in talking.audio[0].keywords
    ]
    score = match(truth, heard, TOLERANCE_MS)
    assert (score.hits, score.false_alarms, score.wrong_keyword) == (len(KEYWORDS), 0, 0), score
    lead_ms = start_ms + 8_000
    assert all(e.end_ms > lead_ms - TOLERANCE_MS for e in events), "an event in the background-only lead"
    for e in events:
        assert e.frames and e.start_ms < e.end_ms and 0.0 < e.score <= 1.0
        assert e.id == f"{e.device}@{e.start_ms}"


def test_kill9_of_the_aggregator_loses_no_event_and_repeats_only_same_ids(
    pipeline: tuple[OntimeSettings, list[WorkerThread]], tmp_path: Path
) -> None:
    settings, _ = pipeline
    words = ("six", "three", "one", "two", "hello", "six", "two", "one")
    fleet = StreamFleet(
        settings,
        1,
        StreamPlan(seconds=38, keywords=words, lead_s=2.0),
        seed=5,
        speed=1.5,
        device_names=["mic-kill"],
    )
    start_ms = int(time.time() * 1000) - 60_000
    expected = _expected(settings, fleet, start_ms)
    truth = [
        Truth("mic-kill", s.word, start_ms + s.start_ms, start_ms + s.end_ms) for s in fleet.audio[0].keywords
    ]
    assert match(truth, expected).hits == len(words), "the offline reference must hear every keyword"

    reader = TopicReader(settings.kafka.bootstrap_servers, str(settings.pipeline.topics.events), 2)
    first = Aggregator(settings, tmp_path / "aggregate-1.log")
    second: Aggregator | None = None
    done = threading.Event()
    try:
        first.wait_ready()
        thread = threading.Thread(target=lambda: (fleet.run(start_ms=start_ms), done.set()))
        thread.start()
        wait_for(lambda: len(reader.poll(0.2)) >= 3, 180, "three events before the kill")
        before = {e.id for e in _events(reader)}
        first.kill9()
        sent_at_kill = fleet.sent
        wait_for(lambda: fleet.sent >= sent_at_kill + 12 or done.is_set(), 60, "frames sent while it is down")
        second = Aggregator(settings, tmp_path / "aggregate-2.log")
        second.wait_ready()
        thread.join(180)
        assert done.is_set()
        wait_for(
            lambda: len({e.id for e in _events(reader.poll(0.2) and reader)}) >= len(expected),
            180,
            "all events",
        )
        reader.poll(3.0)
        events = _events(reader)
    finally:
        for agg in (first, second):
            if agg is not None:
                agg.stop()
        reader.close()

    unique = {e.id: e for e in events}
    assert sorted(unique) == sorted(e.id for e in expected), "an event was lost or invented"
    for e in events:  # a repeat is the same event: same id, same keyword and times
        u = unique[e.id]
        assert (e.keyword, e.start_ms, e.end_ms, e.frames) == (u.keyword, u.start_ms, u.end_ms, u.frames)
    assert match(
        truth, [Heard(e.id, e.device, e.keyword, e.start_ms, e.end_ms) for e in unique.values()]
    ).hits == len(words)

    # The state the replacement resumed from came from the changelog: the device's latest state
    # (JSON, not pickle) remembers the events fired before the kill.
    changelog = TopicReader(settings.kafka.bootstrap_servers, changelog_topic(settings), 2)
    try:
        values = [json.loads(v) for k, v in changelog.poll(3.0) if k == b"mic-kill" and v]
    finally:
        changelog.close()
    assert values, "no state in the changelog"
    assert before <= set(values[-1]["fired"]), (
        "state after the restart does not know the events before the kill"
    )


def test_demo_stream_lists_and_scores_events(kafka_bootstrap: str, tmp_path: Path) -> None:
    import io

    from workers.config.settings import load_settings
    from workers.tools.demo import DemoOptions, run_demo

    out = io.StringIO()
    # A generous budget: this test is about events, not deadlines (a shared, loaded machine).
    flags = ["--set", "pipeline.budget_ms=60000"]
    options = DemoOptions(
        devices=1, duration_s=12.0, run_dir=tmp_path, live=False, stream=True, rate=4.0, worker_flags=flags
    )
    settings = load_settings("acoustic", {"pipeline": {"budget_ms": 60000}})
    outcome = run_demo(options, settings, bootstrap=kafka_bootstrap, out=out)
    text = out.getvalue()

    assert outcome.problems == [], text
    assert outcome.accounted == outcome.sent > 40, text  # 1 device, a frame every 250 ms
    assert outcome.worker_exits.get("aggregate") == 0, text
    assert outcome.events is not None
    truths = (tmp_path / "truth.jsonl").read_text().splitlines()
    assert len(truths) == len(outcome.events.truths) == 2, text
    events = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(events) == outcome.events.score.events
    assert "event precision" in text and "event latency ms" in text
    assert text.count("  event: ") == outcome.events.score.events  # each listed as it fired
