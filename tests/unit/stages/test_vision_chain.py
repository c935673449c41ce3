"""The vision stages in memory, no broker: real camera PNGs become labelled results, and a bad image
is dead-lettered by preprocess without taking its batch down."""

from __future__ import annotations

import json

import numpy as np

from pipelines.vision import png
from pipelines.vision.fashion_mnist import camera_frames
from schemas.results import Result
from workers.config.settings import load_settings
from workers.messages.deadline import Deadline, now_ms
from workers.messages.envelope import Envelope, Source
from workers.stages.chain import build_stages, run_chain

SPEC = load_settings("vision").pipeline


def _envelope(n: int, payload: bytes, content_type: str = "image/png") -> Envelope:
    now = now_ms()
    return Envelope(
        id=f"img-{n}",
        key=f"cam-{n:04d}".encode(),
        payload=payload,
        content_type=content_type,
        deadline=Deadline(now + 60_000),  # generous: this test is about decoding, not shedding
        captured_ms=int(now),
        taken_ms=now,
        source=Source(SPEC.topics.raw, 0, n, int(now)),
    )


def test_pngs_become_results_and_a_bad_image_goes_to_the_dlq_alone() -> None:
    stages = build_stages(SPEC, ["preprocess", "infer", "postprocess"])
    images = camera_frames()[:64]
    batch = [_envelope(i, img.payload) for i, img in enumerate(images)]
    batch.insert(5, _envelope(999, png.encode(np.zeros((28, 28, 3), np.uint8))))
    routed = run_chain(stages, batch)

    dead = [r for r in routed if r.outcome.kind == "dlq"]
    assert [(r.stage, r.outcome.envelope.id, r.outcome.reason) for r in dead] == [
        ("preprocess", "img-999", "bad-shape")
    ]
    assert "3 channels (RGB)" in dead[0].outcome.detail
    results = [
        Result.model_validate(json.loads(r.outcome.envelope.payload or b""))
        for r in routed
        if r.outcome.kind == "emit"
    ]
    assert sorted(r.id for r in results) == sorted(f"img-{i}" for i in range(len(images)))
    truth = {f"img-{i}": img.label for i, img in enumerate(images)}
    right = sum(r.label == truth[r.id] for r in results)
    assert right >= 0.8 * len(images), f"{right}/{len(images)}"
    assert {r.model.name for r in results} == {"vision-student-int8"}
    assert all(len(r.top) == 3 and r.pipeline == "vision" for r in results)


def test_preprocess_hands_on_the_normalised_image_tensor() -> None:
    [pre] = build_stages(SPEC, ["preprocess"])
    image = camera_frames()[0]
    [outcome] = pre.process([_envelope(0, image.payload)])
    assert outcome.kind == "emit"
    assert outcome.envelope.content_type == "application/x-ontime-tensor;dtype=float32;shape=1x1x28x28"
    tensor = np.frombuffer(outcome.envelope.payload or b"", dtype="<f4").reshape(28, 28)
    np.testing.assert_array_equal(tensor, image.pixels.astype(np.float32) / np.float32(255.0))
