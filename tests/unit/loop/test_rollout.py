"""The replica's side of a rollout without a broker: a plan prepared on the follower's thread is
swapped in by `between_batches` and answered; a refused version changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from schemas.card import ModelCard
from workers.config.settings import load_settings
from workers.config.spec import MODELS_DIR
from workers.loop.plans import Ack, Plan
from workers.loop.rollout import RolloutFollower
from workers.stages.stage import build_stage
from workers.telemetry.hooks import Telemetry

V = "acoustic/student-int8"


class Sent:
    """Collects what the follower produces (its acknowledgements), as a producer would send them."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        return 0


class Changes(Telemetry):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def model_changed(self, stage: str, ref: str, result: str, role: str = "serving") -> None:
        self.seen.append((stage, ref, result))


def follower(tmp_path: Path) -> tuple[RolloutFollower, Changes]:
    shutil.copytree(MODELS_DIR / V, tmp_path / V)
    bad = tmp_path / V / "versions" / "3.0.0"
    shutil.copytree(tmp_path / V / "versions" / "2.0.0", bad)
    shutil.copy(MODELS_DIR / "acoustic/student/model.onnx", bad / "model.onnx")  # not the card's bytes
    card = ModelCard.load(bad)
    card.version = "3.0.0"
    card.save(bad)
    settings = load_settings(
        "acoustic", {"models_dir": str(tmp_path), "pipeline": {"stages": {"infer": {"gate": None}}}}
    )
    stage = build_stage(settings.pipeline, "infer", warm=False)
    changes = Changes()
    return RolloutFollower(settings, [stage], changes), changes


def test_a_prepared_version_is_swapped_in_between_batches_and_acknowledged(tmp_path: Path) -> None:
    rollout, changes = follower(tmp_path)
    stage = rollout.stages["infer"]
    rollout._prepare(Plan("infer", f"{V}@2.0.0", "r1", 1, previous=f"{V}@1.1.0"))
    assert stage.model.card.version == "1.1.0"  # nothing changes until the loop says so
    sent = Sent()
    rollout.between_batches(sent)  # type: ignore[arg-type]
    assert stage.model.card.version == "2.0.0"
    ((topic, key, value),) = sent.records
    ack = Ack.decode(value)
    assert (topic, key, ack.ok, ack.rollout) == (
        "acoustic.control",
        f"ack/infer/{rollout.replica}".encode(),
        True,
        "r1",
    )
    assert ack.serving == stage.model.identity
    assert changes.seen == [("infer", f"{V}@2.0.0", "applied")]
    rollout._prepare(Plan("infer", f"{V}@2.0.0", "r1", 1))  # the same plan again: nothing to do
    rollout.between_batches(sent)  # type: ignore[arg-type]
    assert len(sent.records) == 1


def test_a_refused_version_keeps_the_serving_one_and_says_why(tmp_path: Path) -> None:
    rollout, changes = follower(tmp_path)
    stage = rollout.stages["infer"]
    before = stage.model
    rollout._prepare(Plan("infer", f"{V}@3.0.0", "r2", 1))
    sent = Sent()
    rollout.between_batches(sent)  # type: ignore[arg-type]
    assert stage.model is before
    ack = Ack.decode(sent.records[0][2])
    assert (ack.ok, ack.refused) == (False, "checksum") and "sha256" in ack.reason
    assert changes.seen == [("infer", f"{V}@3.0.0", "checksum")]


def test_a_canary_plan_sets_the_candidate_and_its_share(tmp_path: Path) -> None:
    rollout, _ = follower(tmp_path)
    stage = rollout.stages["infer"]
    rollout._prepare(Plan("infer", f"{V}@1.1.0", "r3", 1, candidate=f"{V}@2.0.0", share=0.25))
    rollout.between_batches(Sent())  # type: ignore[arg-type]
    assert stage.canary is not None and stage.canary.share == 0.25
    assert (stage.model.card.version, stage.canary.model.card.version) == ("1.1.0", "2.0.0")
    rollout._prepare(Plan("infer", f"{V}@1.1.0", "r4", 2))  # abort
    rollout.between_batches(Sent())  # type: ignore[arg-type]
    assert stage.canary is None and stage.model.card.version == "1.1.0"


def test_plans_read_while_catching_up_are_prepared_newest_first_only_once_caught_up(tmp_path: Path) -> None:
    rollout, _ = follower(tmp_path)
    old = Plan("infer", f"{V}@3.0.0", "r0", 1, previous=f"{V}@1.1.0")
    new = Plan("infer", f"{V}@2.0.0", "r1", 1, previous=f"{V}@1.1.0")
    rollout.take(b"model/infer", old.encode())
    rollout.take(b"model/infer", new.encode())
    rollout.take(b"model/vision", b"garbage")  # not a plan this worker can read: skipped
    assert not rollout.pending()  # nothing prepared before the topic's end
    rollout.caught_up()
    assert rollout.pending()
    rollout.between_batches(Sent())
    assert rollout.serving["infer"] == f"{V}@2.0.0"  # the newest plan, the refused 3.0.0 never tried
