"""Exactly-once across a broker kill -9 and restart: the stage recovers, every frame answered once.

The broker of its own (the session's broker serves every other test) is killed mid-stream while
a transactional stage worker (the three stages chained) has transactions open, and started again
on the same ports and data. Afterwards a `read_committed` reader must see every frame sent
answered exactly once: zero missing (the stage came back and redid the aborted batches), zero
duplicates (the aborted transactions' records are invisible to it).
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

from tests.integration.pipeline_kit import (
    PacedDevice,
    WorkerThread,
    alive,
    committed_ids,
    holds_for,
    pipeline_overrides,
    wait_for,
)
from workers.config.settings import load_settings
from workers.kafka.topics import create_topics
from workers.localkafka.broker import LocalBroker

STAGES = ("preprocess", "infer", "postprocess")


def test_exactly_once_recovers_from_a_broker_restart_with_every_frame_answered_once(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    bootstrap = broker.start()
    state = broker.state()
    assert state is not None
    overrides = pipeline_overrides(f"t{uuid.uuid4().hex[:8]}", bootstrap, 2)
    overrides["pipeline"]["skip_ahead"] = False  # every frame comes out with its own id
    overrides["pipeline"]["stages"] = {s: {"exactly_once": True} for s in STAGES}
    settings = load_settings("acoustic", {**overrides, "worker": {"flush_timeout_s": 3}})
    topics = settings.pipeline.topics
    create_topics(settings)
    device = PacedDevice(bootstrap, topics.raw, prefix="e")
    worker = WorkerThread(settings, list(STAGES))
    try:
        wait_for(lambda: bool(worker.worker._owned), 120.0, "assigned")
        device.start()
        wait_for(lambda: worker.worker.counts["emit"] >= 30, 120.0, "results before the fault")
        assert broker.kill()  # kill -9 with transactions open
        holds_for(alive(worker), 8.0, "the worker rides out the outage")  # the outage lasts 8 s
        assert worker.thread.is_alive() and worker.error is None
        broker.start(port=state.port, controller_port=state.controller_port)
        before = worker.worker.counts["emit"]
        wait_for(lambda: worker.worker.counts["emit"] >= before + 60, 180.0, "results after the restart")
        assert device.stop() == 0
        sent = device.sent
        want = set(sent)
        ids = committed_ids(
            bootstrap,
            [topics.results, topics.late, topics.dlq],
            lambda ids: want <= set(ids),
            180.0,
            quiet_s=3.0,
        )
        assert worker.thread.is_alive() and worker.error is None
    finally:
        device.stop(0)
        worker.stop()
        broker.stop()
    counts = Counter(ids)
    assert not set(sent) - set(counts), sorted(set(sent) - set(counts))[:10]  # nothing missing
    assert set(counts) == set(sent), sorted(set(counts) - set(sent))[:10]  # nothing foreign
    assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1][:10]  # no duplicates
