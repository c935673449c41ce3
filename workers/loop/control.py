"""The pipeline's control topic on the wire: latency reports out; reports and model plans in.

`P.control` is compacted with one partition: the newest record per key survives, so a worker
that starts reads the current state of every stage from the beginning in a few records. Each
worker reads it with one group-less consumer on its own thread (it never commits and never joins
the stages' groups), routing records by key prefix: `latency/` to the latency board, `model/` to
the rollout follower (workers/loop/rollout.py). Records it cannot parse are skipped, since
nothing on this topic may stop a worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from workers.config.settings import OntimeSettings
from workers.deadlines.reserve import LatencyBoard, LatencyReport, LatencyWindow
from workers.kafka.clients import replica_id
from workers.messages.deadline import now_ms
from workers.telemetry.logs import event

log = logging.getLogger("ontime.control")

PUBLISH_EVERY_S = 1.0
CATCH_UP_S = 5.0  # at start: how long to read the control topic towards its end
SEED_HOP_MS = 10.0  # queue + Kafka hop allowed for in a stage's first report, before it measured any


class LatencyPublisher:
    """Measures this worker's stages per frame and reports them on `P.control` every second."""

    def __init__(self, settings: OntimeSettings, stages: Sequence[str], board: LatencyBoard) -> None:
        self.topic = settings.pipeline.topics.control
        self.replica = replica_id(settings)
        self.board = board
        self.windows = {s: LatencyWindow() for s in stages}
        self._last: dict[str, LatencyReport] = {}
        self._due = 0.0
        self._failed_logged = False

    def seed(self, stage: str, compute_ms: float) -> None:
        """Before any frame: report the stage's warmed-up cost plus a hop allowance, so an idle
        pipeline's first burst is planned with this rather than the pessimistic budget shares."""
        estimate = compute_ms + SEED_HOP_MS
        self._last[stage] = LatencyReport(stage, self.replica, estimate, estimate, 0, now_ms())
        self._due = 0.0

    def observe(self, stage: str, at_ms: float, latency_ms: float) -> None:
        window = self.windows.get(stage)
        if window is not None:
            window.observe(at_ms, latency_ms)

    def maybe_publish(self, producer: Producer) -> None:
        """Report each stage's window (also onto the local board) if a second has passed."""
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + PUBLISH_EVERY_S
        now = now_ms()
        for stage, window in self.windows.items():
            report = window.report(stage, self.replica, now)
            if report is None and stage in self._last:  # idle: still alive, last known latency
                report = replace(self._last[stage], at_ms=now)
            if report is None:
                continue
            self._last[stage] = report
            self.board.put(report)
            try:
                producer.produce(self.topic, key=report.key(), value=report.encode(), on_delivery=self._sent)
            except (BufferError, Exception) as exc:  # a report is advisory: never stop the loop for it
                self._log_once(str(exc))

    def _sent(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._log_once(err.str())

    def _log_once(self, error: str) -> None:
        if not self._failed_logged:
            self._failed_logged = True
            event(log, "control-publish-failed", logging.WARNING, topic=self.topic, error=error)


class Route(Protocol):
    """What owns one kind of record on `P.control` (by key prefix)."""

    def take(self, key: bytes, value: bytes) -> None:
        """One record; must not raise on garbage (nothing on this topic may stop a worker)."""

    def caught_up(self) -> None:
        """The topic has been read to its end once, at start: act on the state it holds."""


class BoardFeed:
    """Latency reports (`latency/<stage>/<replica>`) into the worker's `LatencyBoard`."""

    def __init__(self, board: LatencyBoard) -> None:
        self.board = board
        self.skipped = 0

    def take(self, key: bytes, value: bytes) -> None:
        try:
            self.board.put(LatencyReport.decode(value))
        except ValueError:
            self.skipped += 1

    def caught_up(self) -> None:
        return None


class ControlFollower:
    """One group-less reader of `P.control` per worker, on a daemon thread, handing each record
    to the route that owns its key prefix (latency reports, model plans)."""

    def __init__(self, settings: OntimeSettings, routes: dict[str, Route]) -> None:
        self.topic = settings.pipeline.topics.control
        self.routes = [(prefix.encode(), route) for prefix, route in routes.items()]
        self._config = {
            **settings.kafka.as_librdkafka_dict(),
            "group.id": f"ontime.{settings.pipeline.name}.control-reader",  # assigns only, never commits
            "client.id": f"ontime-{settings.pipeline.name}-control",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 500,  # reports come once a second: no need to ask more often
            "error_cb": self._on_error,
        }
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ontime-control", daemon=True)
        self._errors_logged = False

    def start(self, catch_up_s: float = CATCH_UP_S) -> None:
        """Read the topic to its end (at most `catch_up_s`), let every route act on that state,
        then follow it on the thread: a replica that starts after a rollout serves its version."""
        self._consumer = consumer = Consumer(self._config)
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=catch_up_s)
        except KafkaException as exc:  # no control topic (yet): serve what the pipeline names
            event(log, "control-topic-missing", logging.WARNING, topic=self.topic, error=str(exc))
            high = 0
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + catch_up_s
        position = 0
        while position < high and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                position = int(msg.offset() or 0) + 1
                self._dispatch(msg)
        for _, route in self.routes:
            route.caught_up()
        self._thread.start()

    def stop(self) -> None:
        """Stop following; never blocks the worker's exit for long (see `close_briefly`)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            close_briefly(consumer, "ontime-control-close")

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stop.is_set():
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        key, value = msg.key(), msg.value()
        if key is None or value is None:  # a tombstone or a keyless record: nothing to act on
            return
        for prefix, route in self.routes:
            if key.startswith(prefix):
                route.take(key, value)
                return

    def _on_error(self, err: KafkaError) -> None:
        if not self._errors_logged:
            self._errors_logged = True
            event(log, "control-read-error", logging.WARNING, topic=self.topic, error=err.str())


def close_briefly(consumer: Consumer, name: str, timeout_s: float = 5.0) -> None:
    """Close a control-topic reader on a daemon thread, waiting at most `timeout_s`: a close can
    hang on a broker that refuses us or is gone, and such a reader holds nothing worth waiting for."""
    closer = threading.Thread(target=consumer.close, name=name, daemon=True)
    closer.start()
    closer.join(timeout=timeout_s)
