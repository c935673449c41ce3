"""Find or start a broker: the environment's cluster wins and is never started or stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.config.settings import BOOTSTRAP_ENV
from workers.localkafka.config import DEFAULT_CONTROLLER_PORT, DEFAULT_PORT, port_is_free
from workers.localkafka.find import broker_for_run, default_ports, find_or_start


def test_the_cluster_in_the_environment_is_used_as_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(BOOTSTRAP_ENV, "kafka-0:9092,kafka-1:9092")
    heard: list[str] = []
    found = find_or_start(tmp_path, announce=heard.append)
    assert (found.bootstrap, found.started) == ("kafka-0:9092,kafka-1:9092", None)
    assert BOOTSTRAP_ENV in found.where
    assert heard == []  # nothing was started, so nothing announced
    assert list(tmp_path.iterdir()) == []  # no broker files written
    with broker_for_run(tmp_path) as again:
        assert again.started is None


def test_default_ports_only_when_both_are_free() -> None:
    both_free = port_is_free(DEFAULT_PORT) and port_is_free(DEFAULT_CONTROLLER_PORT)
    assert default_ports() == ((DEFAULT_PORT, DEFAULT_CONTROLLER_PORT) if both_free else (None, None))
