"""`ontime bench faults` on the real broker: one cheap row, and the listener a proxy needs.

The row (kill -9 of postprocess under steady load, at-least-once) starts its own broker, workers
and device; it must account for every frame sent. Counts only, never times.
"""

from __future__ import annotations

import io
from pathlib import Path

from confluent_kafka.admin import AdminClient

from workers.config.settings import load_settings
from workers.localkafka.broker import LocalBroker
from workers.localkafka.config import free_port
from workers.tools.bench.faults import QUICK, run_bench


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
    # at-least-once: a kill re-delivers what was in hand and not yet committed, about one batch
    assert row.duplicates <= 2 * batch, out.getvalue()
    assert "| kill -9 postprocess | at-least-once |" in out.getvalue()


def test_a_proxied_listener_sends_clients_to_the_proxy_address(tmp_path: Path) -> None:
    listen, proxy = free_port(), free_port()
    broker = LocalBroker(tmp_path / "kafka", proxied=(listen, proxy))
    direct = broker.start()
    try:
        through = AdminClient({"bootstrap.servers": f"127.0.0.1:{listen}"}).list_topics(timeout=30)
        plain = AdminClient({"bootstrap.servers": direct}).list_topics(timeout=30)
    finally:
        broker.stop()
    assert [(b.host, b.port) for b in through.brokers.values()] == [("127.0.0.1", proxy)]
    assert [f"{b.host}:{b.port}" for b in plain.brokers.values()] == [direct]
