"""The simulated fleet publishes real recordings to a real broker, as the contract says."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Message

from pipelines.vision.fashion_mnist import camera_frames
from tests.integration.conftest import TopicFactory
from workers.config.settings import load_settings
from workers.errors import BrokerError
from workers.messages import headers as h
from workers.messages.frames import load_decoder
from workers.tools.devices import Fleet, device_ids, kcat_example


def _consume(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-devices-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
        }
    )
    consumer.subscribe([topic])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            records.append(msg)
        # Nothing more than what was sent: poll briefly for strays.
        extra = consumer.poll(1.0)
        assert extra is None or extra.error() is not None, "more records than the fleet sent"
    finally:
        consumer.close()
    return records


def test_fleet_sends_k_frames_with_headers_keys_and_payloads(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=3)
    settings = load_settings("acoustic", {"kafka": {"bootstrap_servers": kafka_bootstrap}})
    fleet = Fleet(settings, devices=3, rate=20.0, seed=1, topic=topic)
    report = fleet.run(frames=12)

    assert report.sent == 12
    assert report.delivered == 12
    assert report.failed == 0
    assert sum(report.per_device.values()) == 12
    assert set(report.per_device) == set(device_ids(3, "mic-"))
    assert report.per_device == {"mic-0001": 4, "mic-0002": 4, "mic-0003": 4}

    records = _consume(kafka_bootstrap, topic, 12)
    assert len(records) == 12
    partitions_of: dict[str, set[int]] = defaultdict(set)
    budget = int(settings.pipeline.budget_ms)
    for msg in records:
        key = (msg.key() or b"").decode()
        hd = h.as_dict(msg.headers())
        frame = report.frames[hd[h.ID]]
        assert key == frame.device
        assert hd[h.CONTENT_TYPE] == settings.pipeline.frame.content_type
        assert int(hd[h.CAPTURED_MS]) == frame.captured_ms
        assert int(hd[h.DEADLINE_MS]) == frame.captured_ms + budget
        assert len(msg.value() or b"") == 2 * int(settings.pipeline.frame.params["samples"])
        assert msg.timestamp()[1] == frame.captured_ms
        partitions_of[key].add(msg.partition())
    assert {m.headers() and h.as_dict(m.headers())[h.ID] for m in records} == set(report.frames)
    # One device's frames stay on one partition, so they stay in order.
    assert all(len(parts) == 1 for parts in partitions_of.values())


def test_fleet_without_deadline_leaves_it_to_the_first_stage(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=1)
    settings = load_settings("acoustic", {"kafka": {"bootstrap_servers": kafka_bootstrap}})
    report = Fleet(settings, devices=1, rate=50.0, deadline=False, topic=topic).run(frames=2)
    assert report.delivered == 2
    records = _consume(kafka_bootstrap, topic, 2)
    assert all(h.DEADLINE_MS not in h.as_dict(m.headers()) for m in records)


def test_fleet_refuses_a_missing_topic_before_sending(kafka_bootstrap: str) -> None:
    settings = load_settings("acoustic", {"kafka": {"bootstrap_servers": kafka_bootstrap}})
    fleet = Fleet(settings, devices=1, rate=10.0, topic=f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(BrokerError, match="ontime topics create"):
        fleet.run(frames=1)
    assert fleet.sent == 0


def test_the_printed_kcat_example_publishes_a_valid_frame(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    settings = load_settings(
        "acoustic",
        {"kafka": {"bootstrap_servers": kafka_bootstrap}, "pipeline": {"topics": {"raw": topic}}},
    )
    frame = tmp_path / "frame.pcm"
    frame.write_bytes(np.zeros(int(settings.pipeline.frame.params["samples"]), dtype="<i2").tobytes())
    command = kcat_example(settings, str(frame))
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr

    [msg] = _consume(kafka_bootstrap, topic, 1)
    hd = h.as_dict(msg.headers())
    assert msg.key() == b"mic-0001"
    assert hd[h.CONTENT_TYPE] == settings.pipeline.frame.content_type
    assert str(uuid.UUID(hd[h.ID])) == hd[h.ID]
    assert abs(int(hd[h.CAPTURED_MS]) - time.time() * 1000) < 600_000
    assert len(msg.value() or b"") == 2 * int(settings.pipeline.frame.params["samples"])


def test_camera_fleet_sends_the_test_images_as_png(kafka_bootstrap: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=2)
    settings = load_settings("vision", {"kafka": {"bootstrap_servers": kafka_bootstrap}})
    report = Fleet(settings, devices=2, rate=20.0, seed=3, topic=topic).run(frames=8)
    assert report.delivered == 8 and set(report.per_device) == {"cam-0001", "cam-0002"}

    decode = load_decoder(settings.pipeline.frame)
    images = {f"fashion-mnist t10k #{i}": img for i, img in enumerate(camera_frames())}
    for msg in _consume(kafka_bootstrap, topic, 8):
        hd = h.as_dict(msg.headers())
        frame = report.frames[hd[h.ID]]
        assert hd[h.CONTENT_TYPE] == "image/png"
        assert (msg.value() or b"").startswith(b"\x89PNG\r\n\x1a\n")
        # The bytes on the topic are the labelled test image the fleet says it sent.
        pixels = decode(msg.value(), hd[h.CONTENT_TYPE])[0]
        assert frame.label == images[frame.source].label
        np.testing.assert_array_equal(pixels, images[frame.source].pixels)
