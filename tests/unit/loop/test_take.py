"""How the loop takes a batch: work-conserving, never waiting for company (no broker needed:
the consumer is replaced by a recorder of what the loop asks it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from workers.config.settings import load_settings
from workers.loop.worker import StageWorker
from workers.stages.stage import build_stage


class Msg:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "acoustic.raw"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1)

    def headers(self) -> list[tuple[str, bytes]]:
        return []


class RecordingConsumer:
    """What the loop asked for: poll timeouts and consume(num, timeout) calls."""

    def __init__(self, ready: int) -> None:
        self.ready = [Msg(i) for i in range(ready)]
        self.polls: list[float] = []
        self.consumes: list[tuple[int, float]] = []

    def poll(self, timeout: float) -> Any:
        self.polls.append(timeout)
        return self.ready.pop(0) if self.ready else None

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.consumes.append((num_messages, timeout))
        taken, self.ready = self.ready[:num_messages], self.ready[num_messages:]
        return taken


@pytest.fixture(scope="module")
def worker() -> Iterator[StageWorker]:
    settings = load_settings("acoustic")
    built = StageWorker(settings, [build_stage(settings.pipeline, "infer", warm=False)])
    real = built.consumer
    yield built
    real.close()
    built.producer.close()


def test_an_idle_stage_runs_a_lone_frame_without_waiting_for_company(worker: StageWorker) -> None:
    consumer = RecordingConsumer(ready=1)
    worker.consumer = consumer  # type: ignore[assignment]
    taken = worker._take_records()
    assert len(taken) == 1
    assert consumer.consumes == [(worker.batch.max_size - 1, 0)]  # only what is already fetched


def test_a_batch_is_what_piled_up_capped_at_max_size(worker: StageWorker) -> None:
    consumer = RecordingConsumer(ready=worker.batch.max_size + 5)
    worker.consumer = consumer  # type: ignore[assignment]
    assert len(worker._take_records()) == worker.batch.max_size
    assert len(worker._take_records()) == 5
    assert all(timeout == 0 for _, timeout in consumer.consumes)


def test_the_shipped_pipeline_configures_no_wait() -> None:
    stages = load_settings("acoustic").pipeline.stages.values()
    assert all(s.batch.max_wait_ms == 0 for s in stages)
