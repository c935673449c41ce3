"""The vision pipeline on a real broker: camera PNGs in, labelled results out, bad images dead-lettered.

The same runtime as acoustic, three stage workers, real Fashion-MNIST test images encoded as the
cameras send them. Every bad image is followed by a good one, so each kind of bad input is shown
not to stop the pipeline, and frames sent = results + dead letters, exactly.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from pipelines.vision import png
from pipelines.vision.fashion_mnist import camera_frames
from schemas.errors import ErrorRecord
from schemas.results import Result
from tests.integration.pipeline_kit import Frame, Reader, WorkerThread, fresh_pipeline, produce, record_count
from workers.messages import headers as h

PNG = "image/png"
STAGES = ("preprocess", "infer", "postprocess")
# The served student measures 91.1 % on the 10 000 test images; a broken pipeline is near 10 %.
ACCURACY_FLOOR = 0.80


def _good_frames(count: int, prefix: str = "img") -> list[Frame]:
    images = camera_frames()[:count]
    return [
        Frame(f"{prefix}-{i:04d}", f"cam-{i % 5:04d}", img.label, img.payload, PNG)
        for i, img in enumerate(images)
    ]


def _corrupt_crc(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[len(png.SIGNATURE) + 8 + 5] ^= 0x40  # a byte of IHDR's width field
    return bytes(broken)


def _bad_frames() -> list[tuple[str, bytes | None, str | None, str, str]]:
    """(id, payload, content type or None for no header, expected reason, words in the detail)."""
    gray = png.encode(np.full((28, 28), 128, np.uint8))
    return [
        ("truncated", gray[: len(gray) // 2], PNG, "bad-encoding", "truncated PNG"),
        ("wrong-size", png.encode(np.zeros((32, 32), np.uint8)), PNG, "bad-shape", "32×32"),
        ("wrong-channels", png.encode(np.zeros((28, 28, 3), np.uint8)), PNG, "bad-shape", "3 channels"),
        ("not-a-png", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(500), PNG, "bad-encoding", "not a PNG"),
        ("bad-crc", _corrupt_crc(gray), PNG, "bad-encoding", "CRC mismatch"),
        (
            "bomb",
            png.SIGNATURE
            + png._chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
            + png._chunk(b"IDAT", zlib.compress(bytes(32 << 20), 9))
            + png._chunk(b"IEND", b""),
            PNG,
            "bad-encoding",
            "inflates to more",
        ),
        ("jpeg-type", gray, "image/jpeg", "bad-content-type", "expected image/png"),
        ("no-type", gray, None, "bad-content-type", "missing"),
        ("empty", b"", PNG, "bad-encoding", "not a PNG"),
    ]


@pytest.fixture
def workers() -> Iterator[list[WorkerThread]]:
    started: list[WorkerThread] = []
    yield started
    for w in started:
        w.stop()


def _headers(frame_id: str, content_type: str | None) -> list[tuple[str, bytes]]:
    out = [(h.ID, frame_id.encode())]
    if content_type is not None:
        out.append((h.CONTENT_TYPE, content_type.encode()))
    return out


def test_camera_images_are_classified_end_to_end(
    kafka_bootstrap: str, topic_factory: object, workers: list[WorkerThread]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, base="vision")  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    assert settings.pipeline.frame.content_type == PNG
    for stage in STAGES:
        workers.append(WorkerThread(settings, [stage]))
    frames = _good_frames(300)
    produce(kafka_bootstrap, topics.raw, ((f.device, f.payload, _headers(f.id, PNG)) for f in frames))

    reader = Reader(kafka_bootstrap, [topics.results, topics.dlq, topics.late], topics.partitions)
    try:
        out = reader.read_until(lambda rs: len({r.headers.get(h.ID) for r in rs}) >= len(frames), 240)
    finally:
        reader.close()
    assert not [r for r in out if r.topic != topics.results], "a good image went late or to the dlq"
    results = {r.id: r for r in (Result.model_validate(json.loads(x.value or b"")) for x in out)}
    assert set(results) == {f.id for f in frames}

    labels = {f.id: f.label for f in frames}
    right = sum(results[i].label == labels[i] for i in labels)
    assert right / len(frames) >= ACCURACY_FLOOR, f"{right}/{len(frames)} right"
    assert len({f.label for f in frames}) == 10  # every class was sent, not one easy one
    for result in results.values():
        assert result.pipeline == settings.pipeline.name
        assert result.model.name in ("vision-student-int8", "vision-student-pruned")
        assert [s.stage for s in result.stages] == list(STAGES)
        assert len(result.top) == 3 and result.top[0].label == result.label
        assert result.device is not None and result.device.startswith("cam-")
    # Known labels by class: most of them answered right, not one class swallowing the rest.
    answered = Counter(r.label for r in results.values())
    assert len(answered) >= 8, answered


def test_bad_images_are_dead_lettered_with_their_reason_and_good_ones_answered(
    kafka_bootstrap: str, topic_factory: object, workers: list[WorkerThread]
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, base="vision")  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    for stage in STAGES:
        workers.append(WorkerThread(settings, [stage]))
    bad = _bad_frames()
    good = _good_frames(len(bad), prefix="good")
    records: list[tuple[str | None, bytes | None, list[tuple[str, bytes]]]] = []
    for (bad_id, payload, content_type, _, _), frame in zip(bad, good, strict=True):
        records.append((frame.device, payload, _headers(bad_id, content_type)))
        records.append((frame.device, frame.payload, _headers(frame.id, PNG)))
    sent = produce(kafka_bootstrap, topics.raw, records)

    reader = Reader(kafka_bootstrap, [topics.results, topics.dlq, topics.late], topics.partitions)
    try:
        out = reader.read_until(lambda rs: len(rs) >= len(good) + len(bad), timeout=180)
        for w in workers:
            w.stop()
        workers.clear()
        assert record_count(kafka_bootstrap, topics.results, topics.partitions) == len(good)
        assert record_count(kafka_bootstrap, topics.dlq, topics.partitions) == len(bad)
        assert record_count(kafka_bootstrap, topics.late, topics.partitions) == 0
    finally:
        reader.close()
    assert sent == len(good) + len(bad)

    results = [Result.model_validate(json.loads(r.value or b"")) for r in out if r.topic == topics.results]
    assert sorted(r.id for r in results) == sorted(f.id for f in good)
    expected = {b[0]: b for b in bad}
    dead = [r for r in out if r.topic == topics.dlq]
    assert sorted(ErrorRecord.from_headers("dlq", r.headers).id or "" for r in dead) == sorted(expected)
    for rec in dead:
        err = ErrorRecord.from_headers("dlq", rec.headers)
        _, payload, _, reason, words = expected[err.id or ""]
        assert (err.reason, err.stage) == (reason, "preprocess"), (err.id, err.detail)
        assert words in err.detail, (err.id, err.detail)
        assert (rec.value or b"") == (payload or b""), f"{err.id}: payload changed on its way to the DLQ"
        assert err.source_topic == topics.raw
