"""Time parsing of `ontime offsets reset --to-time` (no broker)."""

from __future__ import annotations

import pytest

from workers.errors import ConfigError
from workers.tools.offsets import parse_time_ms, plan


def test_times_are_utc_unless_they_say_otherwise() -> None:
    assert parse_time_ms("2026-11-29T09:00:00Z") == 1795942800000
    assert parse_time_ms("2026-11-29T09:00:00") == 1795942800000
    assert parse_time_ms("2026-11-29T10:00:00+01:00") == 1795942800000
    assert parse_time_ms("1795942800000") == 1795942800000


def test_a_reset_needs_exactly_one_target() -> None:
    from workers.config.settings import load_settings

    settings = load_settings("acoustic", {"kafka": {"bootstrap_servers": "127.0.0.1:1"}})
    with pytest.raises(ConfigError, match="exactly one"):
        plan(settings, "infer")
    with pytest.raises(ConfigError, match="exactly one"):
        plan(settings, "infer", to="earliest", shift_by=-5)
