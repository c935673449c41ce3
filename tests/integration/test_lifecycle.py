"""Model lifecycle on the real broker: rollout under load, refusals, rollback, a late replica, canary.

One worker runs the three stages chained; the model versions are real artifacts (acoustic
student-int8 1.1.0 and 2.0.0, the pruned int8 student), and the broken ones are real models in
the wrong place: another model's bytes under a card (checksum) and the gate model, whose
outputs differ (shape). The `ontime models …` commands run in-process, as an operator runs them.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas.card import ModelCard
from tests.integration.pipeline_kit import (
    Frame,
    Reader,
    Recorder,
    WorkerThread,
    cli_overrides,
    eval_clips,
    fresh_pipeline,
    record_count,
    send_frames,
    wait_assigned_stages,
)
from workers.cli.main import main
from workers.config.settings import OntimeSettings
from workers.config.spec import MODELS_DIR
from workers.stages.canary import bucket
from workers.telemetry.shadow import ShadowMetrics
from workers.tools.shadow import ShadowWorker

CHAIN = ["preprocess", "infer", "postprocess"]
VARIANT = "acoustic/student-int8"


class Batches(Recorder):
    """Remembers, per computed infer batch, the model versions that answered its members."""

    def __init__(self) -> None:
        super().__init__()
        self.versions_per_batch: list[set[str]] = []
        self.changes: list[tuple[str, str, str]] = []

    def computed(self, envs: Sequence[Any], outcomes: Sequence[Any], compute_ms: float) -> None:
        answered = {o.envelope.model for o in outcomes if o.kind == "emit"}
        if envs and not envs[0].stage_times:  # the chain's first stage: not the infer batch
            return
        with self.lock:
            self.versions_per_batch.append({m.split(":")[1] for m in answered if m})

    def model_changed(self, stage: str, ref: str, result: str, role: str = "serving") -> None:
        with self.lock:
            self.changes.append((stage, ref, result))


def models_with_versions(tmp: Path) -> Path:
    """The served variant with its committed versions, plus two broken ones beside them."""
    variant = tmp / VARIANT
    shutil.copytree(MODELS_DIR / VARIANT, variant)
    versions = variant / "versions"
    # 3.0.0: the fp32 student's bytes under a card whose sha256 is the int8 student's.
    bad_sum = versions / "3.0.0"
    shutil.copytree(versions / "2.0.0", bad_sum)
    shutil.copy(MODELS_DIR / "acoustic/student-pruned/model.onnx", bad_sum / "model.onnx")
    _set_version(bad_sum, "3.0.0")
    # 4.0.0: the gate, a real model with the same input and a two-class output.
    wrong_shape = versions / "4.0.0"
    shutil.copytree(MODELS_DIR / "acoustic/gate", wrong_shape)
    _set_version(wrong_shape, "4.0.0")
    return tmp


def _set_version(directory: Path, version: str) -> None:
    card = ModelCard.load(directory)
    card.version = version
    card.save(directory)


def ontime(settings: OntimeSettings, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`ontime --bootstrap … --set … ARGV` in this process: exit code and everything it printed."""
    capsys.readouterr()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = main(["--bootstrap", settings.kafka.bootstrap_servers, *cli_overrides(settings), *argv])
    finally:  # the command set up logging on the captured stream; the test's own comes back
        root.handlers[:], root.level = handlers, level
    out = capsys.readouterr()
    return code, out.out + out.err


def frames(prefix: str, count: int, devices: int = 12, start: int = 0) -> list[Frame]:
    clips = eval_clips()
    return [
        Frame(f"{prefix}-{i:05d}", f"dev-{i % devices:03d}", clips[i % len(clips)].label,
              clips[i % len(clips)].pcm.astype("<i2").tobytes())
        for i in range(start, start + count)
    ]  # fmt: skip


def results(
    reader: Reader, topic: str, ids: set[str], timeout: float = 120.0
) -> dict[str, list[dict[str, Any]]]:
    """id → every result with that id (a duplicate would show as two), once all of `ids` arrived."""

    def arrived(records: list[Any]) -> bool:
        return ids <= {r.headers.get("ontime-id") for r in records if r.topic == topic}

    reader.read_until(arrived, timeout)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in reader.by_topic(topic):
        value = json.loads(r.value)
        value["_partition"], value["_offset"] = r.partition, r.offset
        by_id.setdefault(value["id"], []).append(value)
    return by_id


class Steady:
    """Waves of frames with a pause between, until told to stop, then `tail` more waves: load that
    flows before, during and after whatever the test does meanwhile, however fast the machine."""

    def __init__(
        self, bootstrap: str, topic: str, wave: int = 40, pause_s: float = 0.1, tail: int = 5
    ) -> None:
        self.sent: list[Frame] = []
        self._stop = threading.Event()
        self._args = (bootstrap, topic, wave, pause_s, tail)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        bootstrap, topic, wave, pause_s, tail = self._args
        n = 0
        while tail > 0:
            batch = frames("load", wave, start=n)
            send_frames(bootstrap, topic, batch)
            self.sent += batch
            n += wave
            if self._stop.is_set():
                tail -= 1
            time.sleep(pause_s)  # pacing the load, not waiting for a condition

    def finish(self, timeout: float = 120.0) -> list[Frame]:
        self._stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the load did not finish"
        return self.sent


def test_rollout_under_load_refusals_rollback_and_a_replica_started_later(
    kafka_bootstrap: str,
    topic_factory: object,
    tmp_path: Path,
    workers: list[WorkerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=3)  # type: ignore[arg-type]
    settings = settings.model_copy(update={"models_dir": models_with_versions(tmp_path)})
    topics = settings.pipeline.topics
    batches = Batches()
    workers.append(WorkerThread(settings, CHAIN, telemetry=batches))
    wait_assigned_stages(settings, ["preprocess"])
    reader = Reader(kafka_bootstrap, [topics.results, topics.late, topics.dlq], topics.partitions)

    # A rollout, and two broken versions, while frames keep flowing.
    sender = Steady(kafka_bootstrap, topics.raw)
    reader.read_until(lambda records: len(records) >= 100)  # the old version is answering
    code, out = ontime(settings, capsys, "models", "rollout", "acoustic", "infer", "2.0.0", "--replicas", "1")
    assert code == 0, out
    assert "all 1 replicas serve acoustic/student-int8@2.0.0" in out
    code, out = ontime(settings, capsys, "models", "rollout", "acoustic", "infer", "3.0.0", "--replicas", "1")
    assert code == 1 and "REFUSED" in out and "checksum" in out, out
    code, out = ontime(settings, capsys, "models", "rollout", "acoustic", "infer", "4.0.0", "--replicas", "1")
    assert code == 1 and "REFUSED" in out and "shape" in out, out
    load = sender.finish()
    answered = results(reader, topics.results, {f.id for f in load})

    # Every frame answered exactly once, none late or dead-lettered, by one version or the other.
    assert {i: len(v) for i, v in answered.items() if len(v) != 1} == {}
    assert not reader.by_topic(topics.late) and not reader.by_topic(topics.dlq)
    versions = [answered[f.id][0]["model"]["version"] for f in load]
    assert set(versions) == {"1.1.0", "2.0.0"}, "the rollout landed mid-stream"
    # Never a mixture inside a batch, and per partition once 2.0.0 answered, 1.1.0 never again.
    assert all(len(v) <= 1 for v in batches.versions_per_batch)
    for partition in range(topics.partitions):
        in_order = sorted((r for v in answered.values() for r in v if r["_partition"] == partition),
                          key=lambda r: r["_offset"])  # fmt: skip
        seen = [r["model"]["version"] for r in in_order]
        assert seen == sorted(seen), f"partition {partition} went back to an old version"
    assert [(ref, result) for _, ref, result in batches.changes] == [
        (f"{VARIANT}@2.0.0", "applied"),
        (f"{VARIANT}@3.0.0", "checksum"),
        (f"{VARIANT}@4.0.0", "shape"),
    ]

    # Rollback restores the old identity in results.
    code, out = ontime(settings, capsys, "models", "rollback", "acoustic", "infer", "--replicas", "1")
    assert code == 0 and "serve acoustic/student-int8@1.1.0" in out, out
    back = frames("back", 60)
    send_frames(kafka_bootstrap, topics.raw, back)
    answered = results(reader, topics.results, {f.id for f in back})
    identity = ModelCard.load(MODELS_DIR / VARIANT)
    assert {
        (a[0]["model"]["version"], a[0]["model"]["sha256"])
        for i, a in answered.items()
        if i.startswith("back")
    } == {(identity.version, identity.sha256)}

    # A replica that starts after a rollout serves the rolled-out version from its first frame.
    code, out = ontime(settings, capsys, "models", "rollout", "acoustic", "infer", "2.0.0", "--replicas", "1")
    assert code == 0, out
    workers.pop().stop()
    later = WorkerThread(settings, CHAIN)
    workers.append(later)
    wait_assigned_stages(settings, ["preprocess"])
    after = frames("after", 60)
    send_frames(kafka_bootstrap, topics.raw, after)
    answered = results(reader, topics.results, {f.id for f in after})
    assert {a[0]["model"]["version"] for i, a in answered.items() if i.startswith("after")} == {"2.0.0"}
    reader.close()


def test_canary_serves_a_sticky_share_of_devices_then_promote(
    kafka_bootstrap: str,
    topic_factory: object,
    workers: list[WorkerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=3)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    workers.append(WorkerThread(settings, CHAIN))
    wait_assigned_stages(settings, ["preprocess"])
    reader = Reader(kafka_bootstrap, [topics.results], topics.partitions)
    name = "acoustic"  # renamed by the --set flags, as the workers see it
    code, out = ontime(
        settings, capsys, "models", "canary", name, "infer", "2.0.0", "--share", "0.3", "--replicas", "1"
    )
    assert code == 0, out
    code, out = ontime(settings, capsys, "models", "status", name)
    assert (
        code == 0
        and "acoustic/student-int8@1.1.0 + canary acoustic/student-int8@2.0.0 for 30% of devices" in out
    )
    assert "ok       acoustic-student-int8:1.1.0 + acoustic-student-int8:2.0.0 (30%)" in out, out

    split = frames("split", 400, devices=40)
    send_frames(kafka_bootstrap, topics.raw, split)
    answered = results(reader, topics.results, {f.id for f in split})
    by_device: dict[str, set[str]] = {}
    for f in split:
        by_device.setdefault(f.device, set()).add(answered[f.id][0]["model"]["version"])
    # Sticky: each device answered by one version, the one its key's hash picks.
    assert all(len(v) == 1 for v in by_device.values()), by_device
    expected = {d: "2.0.0" if bucket(d.encode()) < 0.3 else "1.1.0" for d in by_device}
    assert {d: v.pop() for d, v in by_device.items()} == expected
    assert 4 <= sum(1 for v in expected.values() if v == "2.0.0") <= 20  # 40 devices, share 0.3

    code, out = ontime(settings, capsys, "models", "promote", name, "infer", "--replicas", "1")
    assert code == 0 and "serve acoustic/student-int8@2.0.0" in out, out
    promoted = frames("promoted", 80, devices=40)
    send_frames(kafka_bootstrap, topics.raw, promoted)
    answered = results(reader, topics.results, {f.id for f in promoted})
    assert {answered[f.id][0]["model"]["version"] for f in promoted} == {"2.0.0"}
    reader.close()


def test_shadow_compares_on_its_own_group_and_never_writes_results(
    kafka_bootstrap: str,
    topic_factory: object,
    workers: list[WorkerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_pipeline(kafka_bootstrap, topic_factory, partitions=3)  # type: ignore[arg-type]
    topics = settings.pipeline.topics
    workers.append(WorkerThread(settings, ["preprocess"]))
    workers.append(WorkerThread(settings, ["infer", "postprocess"]))
    metrics = ShadowMetrics(settings.pipeline.name, "infer")
    shadow = ShadowWorker(settings, "infer", "2.0.0", metrics)
    thread = threading.Thread(target=shadow.run, daemon=True)
    thread.start()
    try:
        wait_assigned_stages(settings, ["preprocess", "infer", "infer.shadow"])  # the shadow's own group
        reader = Reader(
            kafka_bootstrap, [topics.results, topics.shadow, topics.late, topics.dlq], topics.partitions
        )
        sent = frames("shadowed", 150)
        send_frames(kafka_bootstrap, topics.raw, sent)
        ids = {f.id for f in sent}
        answered = results(reader, topics.results, ids)
        compared = results(reader, topics.shadow, ids)
    finally:
        shadow.stop()
        thread.join(60)
    # Serving answered every frame with the serving version; the shadow only ever wrote P.shadow.
    assert {a[0]["model"]["version"] for a in answered.values()} == {"1.1.0"}
    assert record_count(kafka_bootstrap, topics.results, topics.partitions) == len(sent)
    assert not reader.by_topic(topics.late) and not reader.by_topic(topics.dlq)
    rows = [c[0] for c in compared.values()]
    assert {(r["serving_model"].split(":")[1], r["candidate_model"].split(":")[1]) for r in rows} == {
        ("1.1.0", "2.0.0")
    }
    # The comparison's serving side is what P.results says, before open-set rejection: the shadow
    # compares the classifiers' top-1, so a frame P.results answers `_unknown_` because its best
    # keyword was unsure carries that keyword (its top[1]) on P.shadow. Agreement is the candidate's own.
    for i in ids:
        served, shadowed = answered[i][0], compared[i][0]["label"]
        assert shadowed == served["label"] or (
            served["label"] == "_unknown_" and shadowed == served["top"][1]["label"]
        ), (served, shadowed)
    agree = sum(r["agree"] for r in rows)
    counted = {"yes": 0.0, "no": 0.0}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "ontime_shadow_frames_total":
                counted[sample.labels["agree"]] += sample.value
    assert counted == {"yes": agree, "no": len(rows) - agree}
    code, out = ontime(settings, capsys, "report", "--shadow")
    assert code == 0 and f"{len(rows)} frames, top-1 agreement {agree / len(rows):.1%}" in out, out
    reader.close()
