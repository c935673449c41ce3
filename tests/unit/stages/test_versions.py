"""Model versions on disk: references with and without `@version`, and refusals of a new version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from schemas.card import ModelCard
from workers.config.spec import MODELS_DIR
from workers.config.versions import split_ref, version_dir, versions_of, with_version
from workers.errors import ModelError
from workers.stages.candidate import Refused, prepare
from workers.stages.model import OnnxModel, load_verified

VARIANT = "acoustic/student-int8"


def test_a_reference_names_a_variant_and_optionally_a_version() -> None:
    assert split_ref(VARIANT) == (VARIANT, None)
    assert split_ref(f"{VARIANT}@2.0.0") == (VARIANT, "2.0.0")
    assert with_version(f"{VARIANT}@1.0.0", "2.0.0") == f"{VARIANT}@2.0.0"
    assert with_version(VARIANT, "acoustic/student@1.0.0") == "acoustic/student@1.0.0"
    with pytest.raises(ModelError, match="not a version"):
        split_ref(f"{VARIANT}@../../etc")


def test_the_top_level_is_the_current_version_and_versions_live_beside_it() -> None:
    assert version_dir(VARIANT, MODELS_DIR) == MODELS_DIR / VARIANT
    assert (
        version_dir(f"{VARIANT}@1.1.0", MODELS_DIR) == MODELS_DIR / VARIANT
    )  # the top-level card says 1.1.0
    assert version_dir(f"{VARIANT}@2.0.0", MODELS_DIR) == MODELS_DIR / VARIANT / "versions" / "2.0.0"
    # 1.2.0: the open-set candidate (docs/models-acoustic.md), on disk but not served.
    assert versions_of(VARIANT, MODELS_DIR) == ["1.1.0", "1.2.0", "2.0.0"]


def test_each_version_is_verified_against_its_own_card_and_names_itself() -> None:
    one, two = OnnxModel(f"{VARIANT}@1.1.0"), OnnxModel(f"{VARIANT}@2.0.0")
    assert one.identity.split(":")[:2] == ["acoustic-student-int8", "1.1.0"]
    assert two.identity.split(":")[:2] == ["acoustic-student-int8", "2.0.0"]
    assert one.card.sha256 != two.card.sha256  # a real, different model
    assert OnnxModel(VARIANT).identity == one.identity  # an unpinned reference still works
    with pytest.raises(ModelError, match=r"no version 9.9.9 on disk \(versions: 1.1.0, 1.2.0, 2.0.0\)"):
        load_verified(f"{VARIANT}@9.9.9")


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """The variant plus a version with another model's bytes (checksum) and one of the gate (shape)."""
    shutil.copytree(MODELS_DIR / VARIANT, tmp_path / VARIANT)
    versions = tmp_path / VARIANT / "versions"
    shutil.copytree(versions / "2.0.0", versions / "3.0.0")
    shutil.copy(MODELS_DIR / "acoustic/student/model.onnx", versions / "3.0.0" / "model.onnx")
    shutil.copytree(MODELS_DIR / "acoustic/gate", versions / "4.0.0")
    for version in ("3.0.0", "4.0.0"):
        card = ModelCard.load(versions / version)
        card.version = version
        card.save(versions / version)
    return tmp_path


@pytest.mark.parametrize(
    ("version", "code"), [("3.0.0", "checksum"), ("4.0.0", "shape"), ("5.0.0", "missing")]
)
def test_a_version_that_cannot_take_the_serving_ones_place_is_refused(
    broken: Path, version: str, code: str
) -> None:
    serving = OnnxModel(f"{VARIANT}@1.1.0")
    with pytest.raises(Refused) as refused:
        prepare(f"{VARIANT}@{version}", serving, max_batch=8, root=broken)
    assert refused.value.code == code


def test_a_good_version_is_warmed_up_with_a_cost_prior() -> None:
    ready = prepare(f"{VARIANT}@2.0.0", OnnxModel(f"{VARIANT}@1.1.0"), max_batch=8, root=MODELS_DIR)
    assert ready.model.card.version == "2.0.0"
    assert ready.prior.intercept_ms + ready.prior.per_item_ms > 0
