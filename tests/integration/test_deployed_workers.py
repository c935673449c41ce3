"""What is deployed is what is tested: the compose services and the chart's Deployments, rendered
from the repository's files, run as local processes against the real broker until /readyz says
ready, then real frames go through them and every one is accounted for.

Substituted, and only this (see tests/deploykit/launch.py, printed per worker): container paths
→ the repository files the Dockerfile copies there; the mounted pipeline file → the compose
volume's host file / the rendered ConfigMap; the bootstrap address → the test broker; the metrics
port → a free loopback port; the OTel collector's container host name → a loopback OTLP/HTTP receiver;
the pod name (downward API) → a pod-like name.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.deploykit import compose
from tests.deploykit.launch import Launch, OtlpSink, Running, from_compose, from_deployment, localise
from tests.deploykit.manifests import helm_binary, render
from tests.integration.pipeline_kit import Reader, Record, eval_clips, frames_from
from workers.config.settings import load_settings
from workers.messages import headers as h

STAGES = ("preprocess", "infer", "postprocess")
FRAMES = 8
WAVES = 4


def run(launches: list[Launch], tmp_path: Path) -> Iterator[list[Running]]:
    running: list[Running] = []
    try:
        for launch in launches:
            print(f"{launch.name}: {' '.join(launch.argv)}")
            for key, (deployed, local) in sorted(launch.substituted.items()):
                print(f"    {key}: {deployed!r} -> {local!r}")
            running.append(Running(launch, tmp_path / f"{launch.name}.log"))
        yield running
    finally:
        for r in running:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(30)


def frames_go_through(bootstrap: str, running: list[Running]) -> None:
    """Waves of real frames in until results come out; every frame of every wave is accounted
    for as a result or routed late, none lost, none dead-lettered. (A device's first frames after its
    producer starts may expire: they wait inside it for its producer id under a busy broker.)"""
    pipeline = load_settings("acoustic").pipeline
    topics = pipeline.topics
    run_id = uuid.uuid4().hex[:8]
    reader = Reader(bootstrap, [topics.results, topics.late, topics.dlq], topics.partitions)
    device = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 1})
    ids: set[str] = set()

    def accounted(records: list[Record]) -> bool:
        return ids <= {r.headers.get("ontime-id") for r in records}

    try:
        for wave in range(WAVES):
            frames = frames_from(eval_clips()[:FRAMES], prefix=f"deployed-{run_id}-{wave}")
            ids |= {f.id for f in frames}
            for f in frames:  # one long-lived device producer: its later waves are sent at once
                now = str(int(time.time() * 1000)).encode()
                hdrs = [
                    (h.ID, f.id.encode()),
                    (h.CONTENT_TYPE, f.content_type.encode()),
                    (h.CAPTURED_MS, now),
                ]
                device.produce(topics.raw, value=f.payload, key=f.device.encode(), headers=hdrs)
            assert device.flush(30) == 0
            records = reader.read_until(accounted, timeout=180)
            if any(r.topic == topics.results and r.headers.get("ontime-id") in ids for r in records):
                break
    finally:
        reader.close()
    mine = [r for r in records if r.headers.get("ontime-id") in ids]
    by_topic = {t: {r.headers["ontime-id"] for r in mine if r.topic == t} for t in topics.all()}
    reasons = Counter(
        f"{r.headers.get('ontime-error-stage')}: {r.headers.get('ontime-error-reason')}"
        for r in mine
        if r.topic == topics.late
    )
    print(
        f"{wave + 1} wave(s) of {FRAMES}: {len(by_topic[topics.results])} results, "
        f"{len(by_topic[topics.late])} late {dict(reasons)}"
    )
    assert not by_topic[topics.dlq], by_topic[topics.dlq]
    assert by_topic[topics.results] | by_topic[topics.late] == ids
    assert by_topic[topics.results], "no frame made it through the deployed pipeline in time"


def drain(running: list[Running]) -> None:
    for r in running:
        code, seconds = r.stop()
        print(f"{r.launch.name}: SIGTERM -> exit {code} after {seconds:.2f} s")
        assert code == 0, r.log_text()
        assert '"stopped"' in r.log_text() or " stopped " in r.log_text()


@pytest.fixture
def collector() -> Iterator[OtlpSink]:
    sink = OtlpSink()
    yield sink
    sink.close()


def test_compose_services_run_as_deployed(kafka_bootstrap: str, tmp_path: Path, collector: OtlpSink) -> None:
    model = compose.load()
    init = localise(from_compose(model, "topic-init"), kafka_bootstrap)
    assert init.argv[:3] == ["ontime", "topics", "create"]
    for running in run([init], tmp_path):
        assert running[0].proc.wait(120) == 0, running[0].log_text()
    workers = [localise(from_compose(model, name), kafka_bootstrap, collector.endpoint) for name in STAGES]
    for w in workers:  # the image's entrypoint script itself, verifying models before the worker
        assert w.argv[0].endswith("deploy/docker/entrypoint.sh")
    for running in run(workers, tmp_path):
        for r in running:
            body = r.wait_ready()
            print(f"{r.launch.name}: /readyz {body.strip()}")
            assert "all 4 models" in r.log_text() or "verified" in r.log_text()
        frames_go_through(kafka_bootstrap, running)
        drain(running)
    # The compose tracing settings work: every worker exported its spans over OTLP/HTTP.
    assert {path for path, _size in collector.exports} == {"/v1/traces"}
    print(f"OTLP exports received: {len(collector.exports)}")


@pytest.mark.skipif(helm_binary() is None, reason="helm not built: run .ci/helm")
def test_chart_deployments_run_as_rendered(kafka_bootstrap: str, tmp_path: Path) -> None:
    manifests = render()
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    assert len(deployments) == len(STAGES)
    launches = [
        localise(from_deployment(d, manifests, tmp_path / "volumes"), kafka_bootstrap) for d in deployments
    ]
    for launch in launches:
        assert launch.env["ONTIME_KAFKA__GROUP_INSTANCE_ID"].startswith(launch.name)
        assert launch.substituted["ONTIME_PIPELINE_FILE"][0] == "/etc/ontime/pipeline/pipeline.yaml"
    for running in run(launches, tmp_path):
        for r in running:
            print(f"{r.launch.name}: /readyz {r.wait_ready().strip()}")
        frames_go_through(kafka_bootstrap, running)
        drain(running)
