"""Drift on the served chain, in process: real models, real recordings, the committed card references.

A held-out stream (recordings and seeds the reference and its thresholds never saw) stays under
every threshold; the same stream 30 dB quieter and a noise-only stream go over. The frames go
through `run_chain` with the preprocess and infer stages, as a chained worker runs them, and the
monitor reads them from the `computed` hook only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from pipelines.acoustic.recordings import CLIP_SAMPLES, to_int16
from pipelines.acoustic.streams import build_stream, windows
from tests.unit.stages.test_stage_deadlines import NOW, PCM, FakeClock
from workers.config.settings import load_settings
from workers.deadlines.costs import Line
from workers.messages import codec
from workers.messages.deadline import Deadline
from workers.messages.envelope import Envelope, Source
from workers.messages.headers import StageTime
from workers.messages.outcome import Outcome
from workers.stages.chain import run_chain
from workers.stages.stage import Stage, build_stage
from workers.telemetry.drift import DriftMonitor

STAGES = ("preprocess", "infer")
BATCH = 32


def held_out_stream(gain_db: float = 0.0) -> np.ndarray:
    """int16 frames every 250 ms of two 150 s eval streams (seeds the reference did not use)."""
    parts = []
    for seed in (41, 42):
        audio = build_stream("eval", 150, 30, seed, distractors=15)
        frames = windows(audio.pcm, CLIP_SAMPLES // 4).astype(np.float32) / 32768.0
        parts.append(to_int16(np.clip(frames * np.float32(10 ** (gain_db / 20)), -1, 1)))
    return np.concatenate(parts)


def noise_only(frames: int) -> np.ndarray:
    rng = np.random.default_rng(99)
    level = 10 ** (rng.uniform(-40, -10, size=(frames, 1)) / 20)
    return to_int16(np.clip(rng.standard_normal((frames, CLIP_SAMPLES)) * level, -1, 1))


def envelopes(pcm: np.ndarray) -> Iterator[list[Envelope]]:
    for start in range(0, len(pcm), BATCH):
        yield [
            Envelope(
                id=f"f{start + i}",
                key=b"mic-0001",
                payload=np.ascontiguousarray(row, dtype="<i2").tobytes(),
                content_type=PCM,
                deadline=Deadline(NOW + 600_000),
                captured_ms=None,
                taken_ms=NOW,
                source=Source("acoustic.raw", 0, start + i, int(NOW)),
            )
            for i, row in enumerate(pcm[start : start + BATCH])
        ]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    pipeline = load_settings("acoustic").pipeline
    built = [build_stage(pipeline, name, clock=FakeClock(), warm=False) for name in STAGES]
    for s in built:
        for key in ("primary", "fallback", "overhead"):
            s.costs[key].set_prior(Line(0.5, 0.0))
    return built


def drift_of(stages: list[Stage], pcm: np.ndarray) -> tuple[DriftMonitor, dict[str, dict[str, float]]]:
    monitor = DriftMonitor(stages[0].pipeline, list(STAGES), CollectorRegistry())
    for batch in envelopes(pcm):
        run_chain(stages, batch, monitor)
    return monitor, {stage: monitor.publish(stage) for stage in STAGES}


def over(monitor: DriftMonitor, scores: dict[str, dict[str, float]]) -> set[str]:
    """Groups whose score is above the card's threshold, as `stage/group`."""
    out = set()
    for stage, groups in scores.items():
        reference = monitor.watch[stage].card.reference
        assert reference is not None
        for group, value in groups.items():
            assert not np.isnan(value), f"{stage}/{group} has no score: too few frames"
            if value > reference.groups[group].threshold:
                out.add(f"{stage}/{group}")
    return out


def test_both_served_stages_carry_a_reference() -> None:
    pipeline = load_settings("acoustic").pipeline
    monitor = DriftMonitor(pipeline, list(STAGES), CollectorRegistry())
    assert set(monitor.watch) == set(STAGES)
    assert set(monitor.watch["preprocess"].window.groups) == {"level", "silence"}
    assert set(monitor.watch["infer"].window.groups) == {"logmel", "labels", "confidence"}


def test_a_held_out_stream_stays_under_every_threshold(stages: list[Stage]) -> None:
    monitor, scores = drift_of(stages, held_out_stream())
    assert over(monitor, scores) == set(), scores


def test_the_same_stream_30_db_quieter_drifts_in_level_silence_and_logmel(stages: list[Stage]) -> None:
    monitor, scores = drift_of(stages, held_out_stream(gain_db=-30.0))
    assert {"preprocess/level", "preprocess/silence", "infer/logmel"} <= over(monitor, scores), scores


def test_noise_only_audio_drifts_in_what_the_model_answers(stages: list[Stage]) -> None:
    monitor, scores = drift_of(stages, noise_only(768))
    assert over(monitor, scores) & {"infer/labels", "infer/confidence"}, scores


def _answered(identity: str, n: int) -> tuple[list[Envelope], list[Outcome]]:
    """n infer inputs (features) and their emitted logits, answered by model `identity`."""
    rng = np.random.default_rng(5)
    envs, outs = [], []
    for i in range(n):
        payload, ct = codec.encode_tensor(rng.standard_normal((1, 40, 101)).astype(np.float32))
        env = Envelope(
            id=f"x{i}",
            key=b"mic",
            payload=payload,
            content_type=ct,
            deadline=Deadline(NOW + 1_000),
            captured_ms=None,
            taken_ms=NOW,
            source=Source("acoustic.features", 0, i, int(NOW)),
            stage_times=[StageTime("preprocess", 0.0, 1.0)],
        )
        logits, lct = codec.encode_tensor(rng.standard_normal((1, 17)).astype(np.float32))
        outs.append(Outcome("emit", env.forward(logits, lct, StageTime("infer", 0.0, 1.0), model=identity)))
        envs.append(env)
    return envs, outs


def test_only_the_primary_models_answers_count_as_outputs() -> None:
    monitor = DriftMonitor(load_settings("acoustic").pipeline, ["infer"], CollectorRegistry())
    watch = monitor.watch["infer"]
    monitor.computed(*_answered("acoustic-student-pruned-int8:1.0.0:" + "0" * 64, 64), 1.0)
    assert watch.window.frames("logmel") == 64 and watch.window.frames("labels") == 0
    monitor.computed(*_answered(watch.identity, 64), 1.0)
    assert watch.window.frames("logmel") == 128 and watch.window.frames("labels") == 64


def test_a_batch_the_monitor_cannot_read_turns_drift_off_for_the_stage_not_the_worker() -> None:
    monitor = DriftMonitor(load_settings("acoustic").pipeline, ["infer"], CollectorRegistry())
    envs, outs = _answered(monitor.watch["infer"].identity, 16)
    envs[3] = replace(envs[3], payload=b"short")
    monitor.computed(envs, outs, 1.0)  # must not raise
    assert "infer" in monitor._failed
    monitor.computed(*_answered(monitor.watch["infer"].identity, 16), 1.0)
    assert monitor.watch["infer"].window.frames("logmel") == 0
