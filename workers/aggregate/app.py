"""The faust-streaming app behind `ontime aggregate`: `P.results` in, `P.events` out.

One agent reads results keyed by device id (so one device stays on one partition, in order),
keeps each device's detector state in a table whose changelog topic is
`ontime.<pipeline>.aggregate-device-state-changelog` (JSON values, never pickle), and sends an
event when the detector fires. A restarted or rebalanced worker rebuilds the table from the
changelog and resumes from the committed offsets; results it sees again are dropped by id, and
an event it fires again carries the same id (device + utterance start).
A result nobody can read goes to `P.dlq` with `ontime-error-*` headers, never a crash.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from pydantic import ValidationError

from schemas.events import Event
from schemas.results import Result
from workers.aggregate.detector import Detection, Detector, Window, new_state
from workers.aggregate.names import STAGE, TABLE, app_id, changelog_topic, data_dir
from workers.config.settings import OntimeSettings
from workers.messages import headers as h

log = logging.getLogger("ontime.aggregate")

__all__ = ["app_id", "build_app", "changelog_topic", "data_dir", "parse_result", "to_event"]


def build_app(settings: OntimeSettings, *, commit_interval_s: float = 1.0) -> faust.App:
    """The app with its agent and table; `faust.Worker(app).execute_from_commandline()` runs it."""
    spec = settings.pipeline
    topics = spec.topics
    assert topics.events is not None  # filled in by PipelineSpec
    datadir = data_dir(settings)
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        app_id(settings),
        datadir=str(datadir),
        broker=[f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")],
        store="memory://",  # rebuilt from the changelog at start: no local files to lose or corrupt
        topic_partitions=topics.partitions,
        topic_replication_factor=topics.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=commit_interval_s,
        # A killed aggregator's partitions move to its replacement after this, not faust's 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        stream_recovery_delay=0.1,
        web_enabled=False,
        processing_guarantee="at_least_once",
    )
    results = app.topic(topics.results, key_type=bytes, value_type=bytes)
    events = app.topic(topics.events, key_type=bytes, value_type=bytes)
    dlq = app.topic(topics.dlq, key_type=bytes, value_type=bytes)
    table = app.Table(
        TABLE,
        default=None,
        partitions=topics.partitions,
        key_type=bytes,  # raw device id; values (no type) use faust's json codec, never pickle
    )
    detector = Detector(spec.events)

    @app.agent(results, name="aggregate")
    async def aggregate(stream: Any) -> None:
        async for record in stream.events():
            key = record.key if isinstance(record.key, bytes) else b""
            message = record.message
            window, device, why = parse_result(record.value)
            if window is None:
                log.warning(
                    "result at %s[%d]@%d unreadable: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    why,
                )
                await dlq.send(key=key or None, value=record.value, headers=_dlq_headers(message, why))
                continue
            device = device or key.decode("utf-8", errors="replace")
            state = table.get(key) or new_state()
            detection = detector.observe(state, device, window)
            if detection is not None:
                event = to_event(spec.name, detection)
                log.info("event %s %s score %.2f", event.id, event.keyword, event.score)
                # Acknowledged before the state that remembers it is written: a crash in between
                # repeats the event (same id) on replay, it can never lose it.
                sent = await events.send(key=device.encode(), value=event.model_dump_json().encode())
                await sent
            table[key] = state  # reassigned so the change reaches the changelog

    return app


def parse_result(value: Any) -> tuple[Window | None, str | None, str]:
    """(window, device, "") from a result's JSON; (None, None, why) if it is not a valid Result."""
    try:
        result = Result.model_validate_json(value if isinstance(value, bytes | str) else b"")
    except ValidationError as exc:
        return None, None, f"invalid-result: {exc.errors()[0]['msg'] if exc.errors() else exc}"
    if result.captured_ms is None:
        return None, None, "invalid-result: no captured_ms, cannot place the window in time"
    scores = {s.label: s.score for s in result.top}
    return Window(result.id, result.captured_ms, scores), result.device, ""


def to_event(pipeline: str, d: Detection) -> Event:
    now = int(time.time() * 1000)
    return Event(
        id=d.id,
        pipeline=pipeline,
        device=d.device,
        keyword=d.keyword,
        start_ms=d.start_ms,
        end_ms=d.end_ms,
        score=d.score,
        frames=d.frames,
        emitted_ms=now,
        latency_ms=now - d.end_ms,
    )


def _dlq_headers(message: Any, why: str) -> dict[str, bytes]:
    reason, _, detail = why.partition(": ")
    return {
        h.ERROR_STAGE: STAGE.encode(),
        h.ERROR_REASON: reason.encode(),
        h.ERROR_DETAIL: (detail or why).encode(),
        h.SOURCE_TOPIC: str(message.topic).encode(),
        h.SOURCE_PARTITION: str(message.partition).encode(),
        h.SOURCE_OFFSET: str(message.offset).encode(),
    }
