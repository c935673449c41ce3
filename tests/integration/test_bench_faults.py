"""`ontime bench faults` on the real broker: one cheap row, and clients kept behind Toxiproxy.

The row (kill -9 of postprocess under steady load, at-least-once) starts its own broker, workers
and device; it must account for every frame sent. Counts only, never times.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from workers.config.settings import load_settings
from workers.localkafka.broker import LocalBroker
from workers.localkafka.config import free_port
from workers.tools.bench.faults import QUICK, run_bench
from workers.tools.bench.recheck import recheck
from workers.tools.bench.toxiproxy import Toxiproxy


def test_kill_9_of_postprocess_under_load_loses_nothing() -> None:
    out = io.StringIO()
    settings = load_settings("acoustic")
    batch = settings.pipeline.stages["postprocess"].batch.max_size
    (row,) = run_bench(settings, out, faults=["kill-postprocess"], modes=["at-least-once"], timing=QUICK)
    assert row.sent >= 10, out.getvalue()
    assert row.lost == 0, out.getvalue()
    assert row.results + row.late + row.dlq == row.sent
    assert row.results > 0
    assert row.recover_s is not None  # frames sent after the respawn got results
    # at-least-once: a kill redoes what was in hand and what auto-commit had not sent yet (≤ 1 s)
    assert row.duplicates <= batch, out.getvalue()
    # the workers' batch sizes were read (workers/tools/bench/batches.py), within their limits
    assert 1 <= row.largest_batch.get("postprocess", 0) <= batch, out.getvalue()
    assert "| kill -9 postprocess | at-least-once |" in out.getvalue()


def test_clients_through_toxiproxy_stay_behind_it_so_its_faults_reach_them(tmp_path: Path) -> None:
    listen, proxy_port = free_port(), free_port()
    broker = LocalBroker(tmp_path / "kafka", proxied=(listen, proxy_port))
    proxy = Toxiproxy(tmp_path / "toxiproxy.log")
    direct = broker.start()
    try:
        proxy.start()
        proxy.proxy("kafka", proxy_port, listen)
        through = f"127.0.0.1:{proxy_port}"
        meta = AdminClient({"bootstrap.servers": through}).list_topics(timeout=30)
        plain = AdminClient({"bootstrap.servers": direct}).list_topics(timeout=30)
        proxy.enable("kafka", False)  # connections closed, new ones refused
        cut = AdminClient({"bootstrap.servers": through, "log_level": 0})
        with pytest.raises(KafkaException):
            cut.list_topics(timeout=3)
        proxy.enable("kafka", True)
        again = cut.list_topics(timeout=30)
    finally:
        proxy.stop()
        broker.stop()
    # metadata names the proxy, so a client never reconnects to the broker past it
    assert [(b.host, b.port) for b in meta.brokers.values()] == [("127.0.0.1", proxy_port)]
    assert [(b.host, b.port) for b in again.brokers.values()] == [("127.0.0.1", proxy_port)]
    assert [f"{b.host}:{b.port}" for b in plain.brokers.values()] == [direct]


def test_the_recheck_of_lost_frames_tells_committed_aborted_and_never_written_apart(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    raw, results = topic_factory(partitions=1), topic_factory(partitions=2)
    plain = Producer({"bootstrap.servers": kafka_bootstrap})
    plain.produce(raw, b"v", headers=[("ontime-id", b"answered")])
    plain.produce(raw, b"v", headers=[("ontime-id", b"aborted")])
    plain.flush(30)
    txn = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"recheck-{raw}"})
    txn.init_transactions(30)
    txn.begin_transaction()
    txn.produce(results, b"v", headers=[("ontime-id", b"answered")])
    txn.commit_transaction(30)
    txn.begin_transaction()
    txn.produce(results, b"v", headers=[("ontime-id", b"aborted")])
    txn.flush(30)
    txn.abort_transaction(30)
    note = recheck(kafka_bootstrap, [raw, results], ["answered", "aborted", "never-written"])
    short_raw, short_results = raw.rsplit(".", 1)[-1], results.rsplit(".", 1)[-1]
    committed, uncommitted = note.split("; read_uncommitted: ")
    assert f"{short_results} 1" in committed and f"{short_raw} 2" in committed, note
    assert f"{short_results} 2" in uncommitted, note  # the aborted answer is there, uncommitted
    assert "(not on the input topic: 1)" in uncommitted, note  # never written at all
