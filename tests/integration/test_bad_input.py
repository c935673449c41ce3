"""Poison records go to P.dlq with their reason and original payload; the pipeline keeps going.

Every bad frame is followed by a good one, so "the next good frame is processed" is checked for
each kind of bad input, and nothing is lost: frames sent = results + dead letters, exactly.
"""

from __future__ import annotations

import json

import numpy as np

from schemas.errors import ErrorRecord
from schemas.results import Result
from tests.integration.pipeline_kit import (
    Frame,
    Reader,
    WorkerThread,
    eval_clips,
    fresh_pipeline,
    produce,
    record_count,
)
from workers.messages import headers as h

F32 = "audio/pcm;format=f32le;rate=16000;channels=1"
PCM = "audio/pcm;format=s16le;rate=16000;channels=1"


def _f32(values: np.ndarray) -> bytes:
    return values.astype("<f4").tobytes()


def _bad_frames() -> list[tuple[str, bytes | None, str | None, str]]:
    """(id, payload, content type or None for no header, expected ontime-error-reason)."""
    rng = np.random.default_rng(7)
    quiet = np.zeros(16000, dtype=np.float32)
    nan, inf = quiet.copy(), quiet.copy()
    nan[100] = np.nan
    inf[5000] = np.inf
    return [
        ("garbage", rng.integers(0, 256, 777, dtype=np.uint8).tobytes(), PCM, "bad-shape"),
        ("wrong-type", b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png", "bad-content-type"),
        ("no-type", bytes(32000), None, "bad-content-type"),
        ("wrong-rate", bytes(32000), "audio/pcm;format=s16le;rate=8000;channels=1", "bad-content-type"),
        ("half-second", bytes(16000), PCM, "bad-shape"),
        ("empty", b"", PCM, "bad-shape"),
        ("nan-samples", _f32(nan), F32, "bad-samples"),
        ("inf-samples", _f32(inf), F32, "bad-samples"),
    ]


def test_bad_frames_are_dead_lettered_and_the_next_good_frame_answered(
    kafka_bootstrap: str, topic_factory: object, workers: list[WorkerThread]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    for stage in ("preprocess", "infer", "postprocess"):
        workers.append(WorkerThread(settings, [stage]))
    clips = eval_clips()
    bad = _bad_frames()
    good: list[Frame] = []
    records: list[tuple[str | None, bytes | None, list[tuple[str, bytes]]]] = []
    for i, (bad_id, payload, content_type, _) in enumerate(bad):
        headers = [(h.ID, bad_id.encode())]
        if content_type is not None:
            headers.append((h.CONTENT_TYPE, content_type.encode()))
        records.append((f"dev-{i}", payload, headers))
        clip = clips[i]
        frame = Frame(f"good-{i}", f"dev-{i}", clip.label, clip.pcm.astype("<i2").tobytes())
        good.append(frame)
        records.append(
            (frame.device, frame.payload, [(h.ID, frame.id.encode()), (h.CONTENT_TYPE, PCM.encode())])
        )
    # A valid f32le frame is accepted too: only its NaN/Inf cousins are poison.
    f32 = Frame("good-f32", "dev-f32", clips[0].label, _f32(clips[0].pcm / 32768.0), F32)
    good.append(f32)
    records.append((f32.device, f32.payload, [(h.ID, f32.id.encode()), (h.CONTENT_TYPE, F32.encode())]))
    sent_raw = produce(kafka_bootstrap, topics.raw, records)

    # A tensor whose shape the classifier cannot take, straight into the features topic.
    wrong = np.zeros((1, 40, 50), dtype=np.float32)
    tensor_type = "application/x-ontime-tensor;dtype=float32;shape=1x40x50"
    sent_features = produce(
        kafka_bootstrap,
        topics.features,
        [("dev-x", wrong.tobytes(), [(h.ID, b"wrong-shape"), (h.CONTENT_TYPE, tensor_type.encode())])],
    )
    expected_dlq = {b[0]: (b[3], "preprocess", b[1]) for b in bad}
    expected_dlq["wrong-shape"] = ("bad-shape", "infer", wrong.tobytes())

    reader = Reader(kafka_bootstrap, [topics.results, topics.dlq, topics.late], topics.partitions)
    try:
        out = reader.read_until(lambda rs: len(rs) >= len(good) + len(expected_dlq), timeout=180)
        for w in workers:
            w.stop()
        workers.clear()
        assert record_count(kafka_bootstrap, topics.results, topics.partitions) == len(good)
        assert record_count(kafka_bootstrap, topics.dlq, topics.partitions) == len(expected_dlq)
        assert record_count(kafka_bootstrap, topics.late, topics.partitions) == 0
    finally:
        reader.close()
    assert sent_raw + sent_features == len(good) + len(expected_dlq)

    results = [Result.model_validate(json.loads(r.value or b"")) for r in out if r.topic == topics.results]
    assert sorted(r.id for r in results) == sorted(f.id for f in good)

    dead = [r for r in out if r.topic == topics.dlq]
    assert len(dead) == len(expected_dlq)
    for rec in dead:
        err = ErrorRecord.from_headers("dlq", rec.headers)
        reason, stage, payload = expected_dlq[err.id or ""]
        assert (err.reason, err.stage) == (reason, stage), (err.id, err.detail)
        assert err.detail
        assert (rec.value or b"") == (payload or b""), f"{err.id}: payload changed on its way to the DLQ"
        assert err.source_topic == (topics.features if stage == "infer" else topics.raw)
        assert err.source_offset >= 0 and err.source_partition >= 0
        for name in (
            h.ERROR_STAGE,
            h.ERROR_REASON,
            h.ERROR_DETAIL,
            h.SOURCE_TOPIC,
            h.SOURCE_PARTITION,
            h.SOURCE_OFFSET,
        ):
            assert name in rec.headers
