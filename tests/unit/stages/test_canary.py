"""Canary split: a sticky share of devices by key hash, within tolerance over thousands of devices,
and the stage answering each member with the version its device is assigned."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.stages.test_stage_deadlines import FakeClock
from tests.unit.stages.test_stage_validation import FEATURES, built, env, features, spec
from workers.stages.canary import Canary, bucket
from workers.stages.model import OnnxModel

DEVICES = [f"mic-{i:05d}".encode() for i in range(5000)]


@pytest.mark.parametrize("share", [0.05, 0.1, 0.3, 0.5])
def test_the_canary_share_holds_within_two_points_over_five_thousand_devices(share: float) -> None:
    taken = sum(1 for d in DEVICES if bucket(d) < share)
    # Binomial spread at n=5000 is at most 0.7 points; 2 points is > 2.8 standard deviations.
    assert abs(taken / len(DEVICES) - share) <= 0.02


def test_a_device_stays_where_it_is_and_a_larger_share_only_adds_devices() -> None:
    at_10 = {d for d in DEVICES if bucket(d) < 0.1}
    at_30 = {d for d in DEVICES if bucket(d) < 0.3}
    assert at_10 < at_30
    assert at_10 == {d for d in DEVICES if bucket(d) < 0.1}  # the same answer every time
    assert all(0.0 <= bucket(d) < 1.0 for d in DEVICES)


def test_the_stage_answers_each_member_with_its_devices_version() -> None:
    stage = built("infer", spec(fallback=None), FakeClock())
    stage.canary = Canary(OnnxModel("acoustic/student-int8@2.0.0"), 0.5)
    batch = [env(i, features(i).tobytes(), FEATURES) for i in range(40)]
    for i, e in enumerate(batch):
        e.key = f"mic-{i:03d}".encode()
    out = stage.process(batch)
    assert all(o.kind == "emit" for o in out)
    versions = {o.envelope.key: (o.envelope.model or "").split(":")[1] for o in out}
    assert versions == {e.key: "2.0.0" if bucket(e.key or b"") < 0.5 else "1.1.0" for e in batch}
    assert set(versions.values()) == {"1.1.0", "2.0.0"}
    assert stage.rows_by_variant["candidate"] == sum(1 for v in versions.values() if v == "2.0.0")
    # A frame without a key stays on the serving version.
    lone = env(99, features(99).tobytes(), FEATURES)
    lone.key = None
    (answer,) = stage.process([lone])
    assert (answer.envelope.model or "").split(":")[1] == "1.1.0"
    assert np.isfinite(stage.costs["candidate"].cost_ms(1))
