"""`Stage.process` on hostile members, with the real served models: validation before shedding,
dtype checks against the model input, spoofed internal headers dropped on the device topic,
a model exception isolated to its culprit, and cache entries that own their memory."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.unit.stages.test_stage_deadlines import NOW, FakeClock
from workers.config.settings import load_settings
from workers.config.spec import PipelineSpec
from workers.deadlines.costs import Line
from workers.messages import codec
from workers.messages import headers as h
from workers.messages.deadline import Deadline
from workers.messages.envelope import Envelope, Source
from workers.stages.chain import run_chain
from workers.stages.stage import InferStage, Stage, build_stage

PCM = "audio/pcm;format=s16le;rate=16000;channels=1"
FEATURES = codec.tensor_content_type(np.dtype("float32"), (1, 40, 101))


def spec(stage: str = "infer", **changes: Any) -> PipelineSpec:
    data = load_settings("acoustic").pipeline.model_dump()
    data["stages"][stage].update(changes)
    data["stages"]["infer"]["gate"] = None
    return PipelineSpec.model_validate(data)


def built(name: str, pipeline: PipelineSpec, clock: FakeClock) -> Stage:
    s = build_stage(pipeline, name, clock=clock, warm=False)
    for key in ("primary", "fallback", "overhead"):
        s.costs[key].set_prior(Line(0.5, 0.0))
    return s


def env(
    i: int, payload: bytes, content_type: str, deadline: float = NOW + 5_000, topic: str = "p.features"
) -> Envelope:
    return Envelope(
        id=f"f{i}",
        key=b"dev",
        payload=payload,
        content_type=content_type,
        deadline=Deadline(deadline),
        captured_ms=None,
        taken_ms=NOW,
        source=Source(topic, 0, i, int(NOW)),
    )


def features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 40, 101)).astype(np.float32)


def test_an_int16_tensor_among_float32_peers_is_dead_lettered_not_promoted() -> None:
    s = built("infer", spec(), FakeClock())
    good = [env(i, features(i).tobytes(), FEATURES) for i in range(3)]
    int16 = env(
        9, features(9).astype("<i2").tobytes(), codec.tensor_content_type(np.dtype("int16"), (1, 40, 101))
    )
    f64 = env(
        8, features(8).astype("<f8").tobytes(), codec.tensor_content_type(np.dtype("float64"), (1, 40, 101))
    )
    out = {o.envelope.id: o for o in s.process([good[0], int16, good[1], f64, good[2]])}
    assert (out["f9"].kind, out["f9"].reason) == ("dlq", "bad-dtype")
    assert (out["f8"].kind, out["f8"].reason) == ("dlq", "bad-dtype")
    assert all(out[g.id].kind == "emit" for g in good)
    # The answers do not depend on the batch: the same as each good member alone.
    for g in good:
        alone = built("infer", spec(), FakeClock()).process([g])[0]
        assert alone.envelope.payload == out[g.id].envelope.payload


def test_frames_that_can_never_run_go_to_the_dlq_even_when_all_would_be_shed() -> None:
    s = built("preprocess", spec("preprocess"), FakeClock())
    past = NOW - 1_000
    batch = [
        env(0, b'{"a": 1}', "application/json", past, "p.raw"),
        env(1, bytes(100), PCM, past, "p.raw"),
        env(2, bytes(32000), PCM, past, "p.raw"),
    ]
    kinds = [(o.envelope.id, o.kind, o.reason) for o in s.process(batch)]
    assert sorted(kinds) == [
        ("f0", "dlq", "bad-content-type"),
        ("f1", "dlq", "bad-shape"),
        ("f2", "late", "expired"),
    ]


def test_internal_headers_from_devices_are_dropped_and_counted() -> None:
    s = built("preprocess", spec("preprocess"), FakeClock())
    spoofed = env(0, bytes(32000), PCM, topic="p.raw")
    spoofed.status, spoofed.model = "degraded", "evil:1:" + "0" * 64
    spoofed.stage_times = [h.StageTime("infer", 1e6, 1e6)]
    spoofed.internal = (h.STATUS, h.MODEL, h.STAGE_MS)
    (out,) = s.process([spoofed])
    assert out.kind == "emit" and out.envelope.status == "ok" and out.envelope.model is None
    assert [t.stage for t in out.envelope.stage_times] == ["preprocess"]
    assert s.untrusted == {h.STATUS: 1, h.MODEL: 1, h.STAGE_MS: 1}
    # On an internal topic the same headers are trusted.
    infer = built("infer", spec(), FakeClock())
    trusted = env(1, features(1).tobytes(), FEATURES)
    trusted.status, trusted.internal = "degraded", (h.STATUS,)
    (res,) = infer.process([trusted])
    assert res.envelope.status == "degraded" and not infer.untrusted


def test_a_model_exception_is_isolated_to_its_culprit() -> None:
    """With the dtype check bypassed, onnxruntime itself fails the batch; the chain reruns alone."""

    class Unchecked(InferStage):
        def decode(self, e: Envelope) -> np.ndarray:
            return codec.decode_tensor(e.payload, e.content_type)

    s = Unchecked(spec(), built("infer", spec(), FakeClock()).model, clock=FakeClock())
    good = [env(i, features(i).tobytes(), FEATURES) for i in range(2)]
    f64 = env(
        5, features(5).astype("<f8").tobytes(), codec.tensor_content_type(np.dtype("float64"), (1, 40, 101))
    )
    routed = {r.outcome.envelope.id: r.outcome for r in run_chain([s], [good[0], f64, good[1]])}
    assert routed["f5"].kind == "dlq" and routed["f5"].reason == "model-error"
    assert routed["f0"].kind == routed["f1"].kind == "emit"


def test_cached_rows_own_their_memory_and_are_accounted_at_their_real_size() -> None:
    s = built("infer", spec(cache={"enabled": True, "max_entries": 64}), FakeClock())
    batch = [env(i, features(i).tobytes(), FEATURES) for i in range(8)]
    s.process(batch)
    assert s.cache is not None and len(s.cache) == 8
    rows = [value for _, value in s.cache._entries.values()]
    for row in rows:
        for array in row.values():
            assert array.base is None and array.flags.owndata  # not a view into the batch output
    assert s.cache.nbytes == sum(a.nbytes for row in rows for a in row.values()) == 8 * 17 * 4
